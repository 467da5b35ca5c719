"""The ops console: server-rendered pages at /ops for ops staff (R2, R3), over the same service functions as the API."""
