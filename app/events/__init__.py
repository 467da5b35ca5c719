"""Domain events (api.md "Events and outbound webhooks"): recorded by `app.audit.service.record`, read here."""
