// Peer 2: Node.js Socket.IO with the Redis adapter, one process per core.
//
// Configured as the Socket.IO docs recommend for several nodes and for
// performance: the Redis adapter between the cluster workers, WebSocket-only
// transport (so no sticky sessions are needed), the native `bufferutil` and
// `utf-8-validate` add-ons of `ws`, and the upgrade request dropped after the
// handshake to save memory. A client joins a room by emitting `join`.
// Usage: node server.js PORT REDIS_URL WORKERS
const cluster = require("node:cluster");
const http = require("node:http");

const [port, redisUrl, workers] = [Number(process.argv[2]), process.argv[3], Number(process.argv[4] || 2)];

if (cluster.isPrimary) {
  for (let i = 0; i < workers; i++) cluster.fork();
  cluster.on("exit", (worker, code) => console.error(`worker ${worker.process.pid} exited with ${code}`));
  process.on("SIGTERM", () => {
    for (const id in cluster.workers) cluster.workers[id].kill("SIGTERM");
    process.exit(0);
  });
} else {
  const { Server } = require("socket.io");
  const { createAdapter } = require("@socket.io/redis-adapter");
  const { createClient } = require("redis");

  (async () => {
    const pubClient = createClient({ url: redisUrl });
    const subClient = pubClient.duplicate();
    await Promise.all([pubClient.connect(), subClient.connect()]);
    const httpServer = http.createServer((req, res) => {
      res.writeHead(200, { "Content-Type": "application/json" });
      res.end(JSON.stringify({ status: "ok", pid: process.pid }));
    });
    const io = new Server(httpServer, { transports: ["websocket"], adapter: createAdapter(pubClient, subClient) });
    io.engine.on("connection", (rawSocket) => { rawSocket.request = null; });
    io.on("connection", (socket) => {
      socket.on("join", (room) => {
        socket.join(room);
        socket.emit("joined", room);
      });
    });
    httpServer.listen(port, "127.0.0.1");
  })().catch((err) => { console.error(err); process.exit(1); });
}
