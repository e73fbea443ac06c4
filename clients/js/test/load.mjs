// Many clients of clients/js/gusher.js in one Node process (driven by tests/test_nothing_lost.py).
//   node load.mjs <ws url> <app> <channel> <clients> <expected messages>
// Prints "ready" once every client is subscribed, then one JSON line when every client has
// all the expected messages (or after the deadline): {"clients": [{"offsets": [...], ...}]}.
import WebSocket from "ws";
import { Gusher } from "../gusher.js";

const [url, app, channel, count, expected] = process.argv.slice(2);
const total = Number(expected);
const clients = [];
let subscribed = 0;
let readyPrinted = false;

for (let i = 0; i < Number(count); i += 1) {
  const gusher = new Gusher(url, { app, auth: `allow:node${i}:${channel}`, WebSocket, minReconnectDelay: 200 });
  const record = { offsets: [], reconnects: 0, unrecovered: 0, subscribedOnce: false };
  const subscription = gusher.subscribe(channel);
  subscription.on("subscribed", () => {
    if (!record.subscribedOnce) {
      record.subscribedOnce = true;
      subscribed += 1;
      if (subscribed === Number(count) && !readyPrinted) {
        readyPrinted = true;
        console.log("ready");
      }
    } else {
      record.reconnects += 1;
    }
  });
  subscription.on("unrecovered", () => { record.unrecovered += 1; });
  subscription.on("message", (message) => {
    record.offsets.push(message.offset);
    maybeDone();
  });
  clients.push({ gusher, record });
}

const deadline = setTimeout(finish, 60000);

function maybeDone() {
  if (clients.every(({ record }) => record.offsets.length >= total)) finish();
}

function finish() {
  clearTimeout(deadline);
  console.log(JSON.stringify({ clients: clients.map(({ record }) => record) }));
  for (const { gusher } of clients) gusher.close();
  setTimeout(() => process.exit(0), 200);
}
