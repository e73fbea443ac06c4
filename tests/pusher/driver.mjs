// Drives real pusher-js 8 clients in Node for the Pusher compatibility tests (tests/pusher_js.py).
//
// Reads one JSON command per line on stdin and prints one JSON line per thing
// a client saw on stdout, so a Python test can run any scenario, with clients
// of several kinds on one channel:
//   {"op":"connect","id":"a","key":…,"port":…,"auth":"http://…/auth","userAuth":"http://…/user-auth"}
//   {"op":"subscribe","id":"a","channel":"presence-x","events":["client-typing"]}   {"op":"unsubscribe","id":"a","channel":…}
//   {"op":"trigger","id":"a","channel":…,"event":"client-x","data":{…}}
//   {"op":"signin","id":"a"}   {"op":"disconnect","id":"a"}   {"op":"members","id":"a","channel":…}
import Pusher from "pusher-js";
import readline from "node:readline";

const clients = new Map();

function say(message) {
  process.stdout.write(JSON.stringify(message) + "\n");
}

function connect(cmd) {
  const options = {
    cluster: "mt1", // pusher-js 8 requires one even when self-hosted (wsHost wins)
    wsHost: cmd.host || "127.0.0.1",
    wsPort: cmd.port,
    wssPort: cmd.port,
    forceTLS: false,
    enabledTransports: ["ws"],
    disableStats: true,
  };
  if (cmd.auth) options.channelAuthorization = { endpoint: cmd.auth, transport: "ajax" };
  if (cmd.userAuth) options.userAuthentication = { endpoint: cmd.userAuth, transport: "ajax" };
  const pusher = new Pusher(cmd.key, options);
  const id = cmd.id;
  clients.set(id, pusher);
  pusher.connection.bind("state_change", (states) => {
    say({ id, type: "state", state: states.current, socket_id: pusher.connection.socket_id || null });
  });
  pusher.connection.bind("error", (error) => {
    const detail = error && error.error && error.error.data ? error.error.data : error && error.data;
    say({ id, type: "connection_error", kind: error && error.type, error: detail || null });
  });
  pusher.bind_global((event, data) => {
    if (event.startsWith("pusher:") && event !== "pusher:cache_miss") return;
    say({ id, type: "global", event, data });
  });
  // What is sent to the signed-in user (#server-to-user-{id}) is emitted on `pusher.user`.
  pusher.user.bind_global((event, data) => say({ id, type: "user_event", event, data }));
}

function subscribe(cmd) {
  const pusher = clients.get(cmd.id);
  const channel = pusher.subscribe(cmd.channel);
  const id = cmd.id;
  channel.bind("pusher:subscription_succeeded", (data) => {
    const members = channel.members ? { count: channel.members.count, me: channel.members.me, ids: Object.keys(channel.members.members).sort() } : null;
    say({ id, type: "subscribed", channel: cmd.channel, members });
  });
  channel.bind("pusher:subscription_error", (error) => say({ id, type: "subscription_error", channel: cmd.channel, error }));
  channel.bind("pusher:cache_miss", () => say({ id, type: "cache_miss", channel: cmd.channel }));
  channel.bind("pusher:subscription_count", (data) =>
    say({ id, type: "subscription_count", channel: cmd.channel, count: data.subscription_count, kept: channel.subscriptionCount }),
  );
  channel.bind("pusher:member_added", (member) => say({ id, type: "member_added", channel: cmd.channel, member, count: channel.members.count }));
  channel.bind("pusher:member_removed", (member) => say({ id, type: "member_removed", channel: cmd.channel, member, count: channel.members.count }));
  channel.bind_global((event, data) => {
    if (event.startsWith("pusher:") || event.startsWith("pusher_internal:")) return;
    say({ id, type: "event", channel: cmd.channel, event, data });
  });
  // Only a listener bound to one event gets its metadata (the sender's user_id of a client event).
  for (const event of cmd.events || []) {
    channel.bind(event, (data, metadata) => say({ id, type: "bound", channel: cmd.channel, event, data, metadata }));
  }
}

const handlers = {
  connect,
  subscribe,
  unsubscribe: (cmd) => clients.get(cmd.id).unsubscribe(cmd.channel),
  trigger: (cmd) => {
    const ok = clients.get(cmd.id).channel(cmd.channel).trigger(cmd.event, cmd.data);
    say({ id: cmd.id, type: "triggered", ok });
  },
  signin: (cmd) => {
    const pusher = clients.get(cmd.id);
    pusher.signin();
    pusher.user.signinDonePromise.then(() => say({ id: cmd.id, type: "signed_in", user: pusher.user.user_data }));
  },
  disconnect: (cmd) => clients.get(cmd.id).disconnect(),
  members: (cmd) => {
    const channel = clients.get(cmd.id).channel(cmd.channel);
    say({ id: cmd.id, type: "members", count: channel.members.count, ids: Object.keys(channel.members.members).sort() });
  },
  exit: () => {
    for (const pusher of clients.values()) pusher.disconnect();
    setTimeout(() => process.exit(0), 100);
  },
};

const input = readline.createInterface({ input: process.stdin });
input.on("line", (line) => {
  if (!line.trim()) return;
  let cmd;
  try {
    cmd = JSON.parse(line);
    handlers[cmd.op](cmd);
  } catch (error) {
    say({ type: "driver_error", error: String(error), line });
  }
});
input.on("close", () => handlers.exit());
say({ type: "ready" });
