// Compiled by `npm run check` (tests/test_js_client.py): the examples of README.md, typed.
import Gusher, { State, type Message } from "./gusher.js";

const gusher = new Gusher("wss://push.example.com", { app: "myapp", auth: async () => "token" });
const news = gusher.subscribe("news");
news.on("message", (message: Message) => console.log(message.channel, message.data, message.offset));
news.on("subscribed", (reply) => console.log(reply.offset, reply.epoch, reply.recovered));
news.on("unrecovered", (info) => console.log("reload from", info.now.offset));
news.on("error", (refusal) => console.log(refusal.reason));
gusher.on("state", ({ previous, current }) => {
  if (current === State.DISCONNECTED) console.log("reconnecting after", previous);
});
const stop: () => void = gusher.on("message", () => {});
stop();
news.unsubscribe();
gusher.close();
