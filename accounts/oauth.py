"""OAuth 2 access tokens as callers (third-party apps a user authorised)."""


def caller_of_access_token(text: str):
    """The caller an OAuth 2 access token stands for; None when it is not a usable token."""
    return None
