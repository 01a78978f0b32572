"""Errors a user can act on: the CLI prints them as one line, without a traceback."""


class FewshotError(Exception):
    """Base for every error the user caused (bad config, bad data, missing env)."""


class ConfigError(FewshotError):
    pass


class DataError(FewshotError):
    pass
