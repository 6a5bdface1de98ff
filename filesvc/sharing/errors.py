from filesvc.errors import BadRequest, PermissionDenied


class InvalidLink(PermissionDenied):
    code = "invalid_link"
    detail = "This link is not valid."


class LinkExpired(PermissionDenied):
    code = "link_expired"
    detail = "This link has expired."


class LinkOutdated(PermissionDenied):
    code = "link_outdated"
    detail = "The file's content has changed since this link was made."


class LinkRevoked(PermissionDenied):
    code = "link_revoked"
    detail = "Whoever made this link may no longer share the file."


class InvalidExpiry(BadRequest):
    code = "invalid_expiry"
