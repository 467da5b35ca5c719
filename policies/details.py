"""P1: billing details are validated on entry; invalid ones are refused and nothing is stored."""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email

# ISO 3166-1 alpha-2, the officially assigned codes.
COUNTRIES = frozenset(
    """AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY
    BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM
    FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT
    JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN
    MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT
    PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL
    TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW""".split()
)

# ISO 4217 active currency codes (lower case, as the API spells them).
CURRENCIES = frozenset(
    """aed afn all amd ang aoa ars aud awg azn bam bbd bdt bgn bhd bif bmd bnd bob brl bsd btn bwp byn bzd cad cdf
    chf clp cny cop crc cup cve czk djf dkk dop dzd egp ern etb eur fjd fkp gbp gel ghs gip gmd gnf gtq gyd hkd hnl
    htg huf idr ils inr iqd irr isk jmd jod jpy kes kgs khr kmf kpw krw kwd kyd kzt lak lbp lkr lrd lsl lyd mad mdl
    mga mkd mmk mnt mop mru mur mvr mwk mxn myr mzn nad ngn nio nok npr nzd omr pab pen pgk php pkr pln pyg qar ron
    rsd rub rwf sar sbd scr sdg sek sgd shp sle sll sos srd ssp stn svc syp szl thb tjs tmt tnd top try ttd twd tzs
    uah ugx usd uyu uzs ves vnd vuv wst xaf xcd xof xpf yer zar zmw zwl""".split()
)

MAX_NAME_LENGTH = 200


def check_email(email: str) -> str:
    """P1: a syntactically valid address; returns it trimmed. Raises ValueError with a clear message."""
    candidate = email.strip()
    try:
        validate_email(candidate, check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(f"not a valid email address: {exc}") from None
    return candidate


# Text the service stores, shows, logs and mails carries no control characters: no terminal escapes in logs and
# consoles, no header injection through an e-mail subject. Refused: the C0 controls (below U+0020), DEL, the C1
# controls (U+0080-U+009F) and, in single-line text, the line and paragraph separators; multi-line text may use line
# feeds and tabs (not carriage returns: a line break is a line feed). Spaces and any other unicode are kept.
_LINE_SEPARATORS = "\u2028\u2029"


def control_characters(text: str, allowed: str = "") -> str:
    """P1/R2/D4: the control characters in `text` (except `allowed`), as `U+XXXX` codes, or ''."""
    found = sorted(
        {
            ch
            for ch in text
            if (ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F or ch in _LINE_SEPARATORS) and ch not in allowed
        }
    )
    return ", ".join(f"U+{ord(ch):04X}" for ch in found)


def check_single_line(text: str) -> str:
    """R2/R3/D4: one line of text (a reason, a message subject), without control characters."""
    if found := control_characters(text):
        raise ValueError(f"must be a single line without control characters (found {found})")
    return text


def check_multi_line(text: str) -> str:
    """D4: text with lines and tabs (a message body), without other control characters."""
    if found := control_characters(text, allowed="\n\t" + _LINE_SEPARATORS):
        raise ValueError(f"must not contain control characters other than line feeds and tabs (found {found})")
    return text


def check_name(name: str) -> str:
    """P1: a non-empty name after trimming, at most MAX_NAME_LENGTH characters, no control characters."""
    candidate = name.strip()
    if not candidate:
        raise ValueError("name must not be empty")
    if len(candidate) > MAX_NAME_LENGTH:
        raise ValueError(f"name must be at most {MAX_NAME_LENGTH} characters")
    if found := control_characters(candidate):
        raise ValueError(f"name must not contain control characters (found {found})")
    return candidate


def check_country(country: str) -> str:
    """P1: an ISO 3166-1 alpha-2 code, upper case exactly as the standard writes it."""
    if country not in COUNTRIES:
        raise ValueError("country must be an ISO 3166-1 alpha-2 code such as 'US' or 'DE'")
    return country


def check_currency(currency: str) -> str:
    """P1/P2: money is integer minor units plus a lower-case ISO 4217 code; anything else is refused."""
    if currency not in CURRENCIES:
        raise ValueError("currency must be a lower-case ISO 4217 code such as 'usd'")
    return currency
