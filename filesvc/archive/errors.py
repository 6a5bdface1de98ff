from filesvc.errors import BadRequest


class InvalidArchiveRequest(BadRequest):
    code = "invalid_archive_request"
