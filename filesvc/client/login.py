"""`filesvc login`: trade a username and password for a token and keep it for the server."""

from __future__ import annotations

import getpass
import os
import sys
import time
from datetime import UTC, datetime

from filesvc.client.config import Credentials, CredentialStore, Target
from filesvc.client.errors import ClientError, UsageError, error_from_response
from filesvc.client.http import network_errors, open_client

USERNAME_ENV = "FILESVC_USERNAME"
PASSWORD_ENV = "FILESVC_PASSWORD"  # noqa: S105 - a variable's name


def ask_username(given: str | None) -> str:
    username = given or os.environ.get(USERNAME_ENV)
    if not username:
        if not sys.stdin.isatty():
            raise UsageError(f"no username: pass --username or set {USERNAME_ENV}")
        username = input("username: ").strip()
    if not username:
        raise UsageError("no username given")
    return username


def ask_password(username: str, from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif os.environ.get(PASSWORD_ENV):
        password = os.environ[PASSWORD_ENV]
    elif sys.stdin.isatty():
        password = getpass.getpass(f"password for {username}: ")
    else:
        raise UsageError(f"no password: pass --password-stdin or set {PASSWORD_ENV}")
    if not password:
        raise UsageError("no password given")
    return password


def login(
    server: str, username: str, password: str, store: CredentialStore
) -> tuple[Credentials, str]:
    """Sign in; the stored credentials and the user's role."""
    with open_client(Target(server, None)) as client, network_errors(server):
        started = time.time()
        response = client.post("auth/token", data={"username": username, "password": password})
        if response.status_code == 401:
            raise ClientError(f"{server} refused the username or password")
        if response.status_code != 200:
            raise error_from_response(response, "login", server)
        body = response.json()
        token = body["access_token"]
        me = client.get("users/me", headers={"Authorization": f"Bearer {token}"})
        if me.status_code != 200:
            raise error_from_response(me, "login", server)
    credentials = Credentials(token, username, started + float(body["expires_in"]))
    store.save(server, credentials)
    return credentials, str(me.json().get("role", "?"))


def describe(server: str, credentials: Credentials, role: str, store: CredentialStore) -> str:
    until = datetime.fromtimestamp(credentials.expires_at, UTC).isoformat(timespec="seconds")
    return (
        f"signed in to {server} as {credentials.username} ({role}); "
        f"the token is valid until {until} and kept in {store.path}"
    )
