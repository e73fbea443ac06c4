// The npm `pusher` SDK, unchanged, against a gusher master (run by tests/test_pusher_api.py).
// Usage: node http_api.mjs <host> <port> <appId> <key> <secret> <channel>
// Prints one JSON object: what each call answered, or the status and body of a refusal.
import Pusher from "pusher";

const [host, port, appId, key, secret, channel] = process.argv.slice(2);
const pusher = new Pusher({ appId, key, secret, host, port: Number(port), useTLS: false });

async function answer(call) {
  try {
    const response = await call();
    return { status: response.status, body: await response.json() };
  } catch (error) {
    return { status: error.status ?? null, body: error.body ?? String(error) };
  }
}

const results = {
  trigger: await answer(() => pusher.trigger(channel, "single", { n: 1 })),
  triggerMany: await answer(() => pusher.trigger([channel, `${channel}-b`], "many", "plain text")),
  triggerExcept: await answer(() => pusher.trigger(channel, "except", "x", { socket_id: process.env.EXCLUDED })),
  triggerInfo: await answer(() => pusher.trigger(channel, "info", "x", { info: "subscription_count" })),
  batch: await answer(() =>
    pusher.triggerBatch([
      { channel, name: "b1", data: { k: 1 } },
      { channel, name: "b2", data: "two", info: "subscription_count" },
    ]),
  ),
  channels: await answer(() =>
    pusher.get({ path: "/channels", params: { filter_by_prefix: channel, info: "subscription_count" } }),
  ),
  channel: await answer(() => pusher.get({ path: `/channels/${channel}`, params: { info: "subscription_count" } })),
  userCountRefused: await answer(() => pusher.get({ path: "/channels", params: { info: "user_count" } })),
  terminate: await answer(() => pusher.terminateUserConnections("nobody")),
  wrongSecret: await answer(() =>
    new Pusher({ appId, key, secret: `${secret}x`, host, port: Number(port) }).trigger(channel, "e", "d"),
  ),
};
console.log(JSON.stringify(results));
