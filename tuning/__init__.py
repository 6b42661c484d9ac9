"""Domain core of translation tuning: dataset rules, wire models, the Vertex AI adapter. No Pulumi here."""
