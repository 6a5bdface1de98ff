"""The client side of the command line: `filesvc login`, `upload` and `download`.

It talks to a filesvc server over HTTP like any other client (httpx, tus 1.0 for uploads,
ranged GETs for downloads) and never imports the server's modules.
"""
