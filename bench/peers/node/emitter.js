// The bench's publisher for the Node peer: @socket.io/redis-emitter, driven by stdin.
//
// One JSON command per line: {"rooms": [...], "seq": s, "count": k, "size": z, "sent_ns": "…"}
// emits `count` events `e` to each room, with data `B|<seq>|<sent_ns>|xxx…`,
// then answers `ok` on stdout so the bench knows the emits were written.
// Usage: node emitter.js REDIS_URL
const readline = require("node:readline");
const { Emitter } = require("@socket.io/redis-emitter");
const { createClient } = require("redis");

(async () => {
  const client = createClient({ url: process.argv[2] });
  await client.connect();
  const emitter = new Emitter(client);
  const lines = readline.createInterface({ input: process.stdin });
  for await (const line of lines) {
    const cmd = JSON.parse(line);
    for (const room of cmd.rooms) {
      for (let i = 0; i < cmd.count; i++) {
        const head = `B|${cmd.seq + i}|${cmd.sent_ns}|`;
        emitter.to(room).emit("e", head + "x".repeat(Math.max(0, cmd.size - head.length)));
      }
    }
    await client.ping();  // every emit above was written before this answer
    process.stdout.write("ok\n");
  }
  await client.quit();
})().catch((err) => { console.error(err); process.exit(1); });
