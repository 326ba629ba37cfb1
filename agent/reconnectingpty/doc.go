// Package reconnectingpty serves the web terminal: pseudo-terminals that
// survive client disconnects and can be re-attached by ID. It is the server
// side of the reconnecting PTY protocol of codersdk/agentproto (frames,
// init/resize/exit payloads, and the client, agentproto.PTYConn): a new ID
// starts a PTY, a known ID re-attaches and first gets the scrollback (the
// last Server.ScrollbackBytes of output). A PTY with no client attached for
// Server.Timeout is killed.
package reconnectingpty
