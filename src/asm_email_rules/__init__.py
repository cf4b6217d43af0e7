"""asm_email_rules: incoming-email rules for service desks."""
