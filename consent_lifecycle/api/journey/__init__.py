"""The hosted consent journey: pages a customer opens from a signed link to confirm, manage and revoke."""
