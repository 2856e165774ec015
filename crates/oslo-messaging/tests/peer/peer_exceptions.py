"""Exceptions the interop tests allow across the wire (allowed_remote_exmods)."""


class WidgetNotFound(Exception):
    """Raised by both peers' `fail` method; rebuilt from class/module/kwargs."""

    msg_fmt = "Widget %(widget)s could not be found."

    def __init__(self, message=None, **kwargs):
        self.kwargs = kwargs
        self.kwargs.setdefault('code', 404)
        if not message:
            message = self.msg_fmt % kwargs
        super().__init__(message)
