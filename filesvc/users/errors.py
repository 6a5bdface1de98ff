from filesvc.errors import Conflict, NotFound


class UserNotFound(NotFound):
    code = "user_not_found"
    detail = "User not found."


class UsernameTaken(Conflict):
    code = "username_taken"
    detail = "That username is taken."


class UserOwnsFiles(Conflict):
    code = "user_owns_files"
    detail = "The user still owns files; delete them first or disable the user instead."


class CannotChangeSelf(Conflict):
    code = "cannot_change_self"
    detail = "Admins cannot demote, disable or delete themselves."
