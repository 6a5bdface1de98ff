from filesvc.errors import AppError, BadRequest, Conflict, NotFound


class TransferNotFound(NotFound):
    code = "transfer_not_found"
    detail = "Transfer not found."


class InvalidTransferId(BadRequest):
    code = "invalid_transfer_id"
    detail = "A transfer id is 1 to 64 of A-Z, a-z, 0-9, `_` and `-`."


class TransferIdTaken(Conflict):
    code = "transfer_id_taken"
    detail = "This transfer id is taken by another user or another transfer."


class TooManyStreams(AppError):
    status_code = 429
    code = "too_many_streams"
    detail = "Too many event streams open; close one first."
