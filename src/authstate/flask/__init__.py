"""authstate for Flask: server-side sessions (``ServerSideSessions``)."""

from authstate.flask.sessions import ServerSideSessions as ServerSideSessions
