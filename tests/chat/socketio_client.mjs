// A real socket.io-client (npm, pinned in package-lock.json) joining an event's chat as a reader.
// Usage: node socketio_client.mjs <server url> <event slug> <default|websocket> <text of the last message>
// Prints one JSON line when it is connected ({"ready": transport}) and one at the end with the
// texts it received in order, the transport it started on and the one it ended on.
import { io } from "socket.io-client";

const [url, event, mode, last] = process.argv.slice(2);
const options = { auth: { event }, reconnection: false };
if (mode === "websocket") options.transports = ["websocket"];
const socket = io(url, options);  // otherwise socket.io-client's defaults: polling, then the upgrade
const texts = [];
let first = null;
const upgrades = [];

function finish(error) {
  const engine = socket.io.engine;
  console.log(JSON.stringify({
    texts, first, upgrades, error: error || null,
    last: engine && engine.transport ? engine.transport.name : null,
  }));
  socket.disconnect();
  setTimeout(() => process.exit(0), 50);
}

socket.io.on("open", () => {
  first = socket.io.engine.transport.name;
  socket.io.engine.on("upgrade", (transport) => upgrades.push(transport.name));
});
// in the room as soon as the server has acknowledged the connection (before the welcome, and for
// the defaults usually before the upgrade to websocket has finished)
socket.on("connect", () => console.log(JSON.stringify({ ready: socket.io.engine.transport.name })));
socket.on("messages", (batch) => {
  for (const m of batch) texts.push(m.text);
  if (texts.includes(last)) finish();
});
socket.on("connect_error", (err) => finish(`connect_error: ${err.message}`));
socket.on("disconnect", (reason) => { if (!texts.includes(last)) finish(`disconnect: ${reason}`); });
setTimeout(() => finish("timeout"), 20000);
