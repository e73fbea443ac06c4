// gusher.js — the browser and Node client of gusher (https://github.com/…/gusher).
// One ES module, no dependencies, no build step. Served by every gusher slave at /gusher.js.
//
//   import { Gusher } from "https://push.example.com/gusher.js";
//   const gusher = new Gusher("wss://push.example.com", { app: "myapp", auth: async () => fetchToken() });
//   const news = gusher.subscribe("news");
//   news.on("message", (message) => render(message.data));
//   news.on("unrecovered", () => reloadFromBackend());
//
// It reconnects with exponential backoff and jitter, resubscribes every channel, and on
// channels of apps that keep history resumes each from the last offset it saw (`since`), so
// nothing published while it was away is lost; when the server cannot replay all of it, the
// subscription says so ("unrecovered") and the application reloads its state.

const DEFAULTS = {
  minReconnectDelay: 500, // ms before the first reconnect attempt (then doubled, with jitter)
  maxReconnectDelay: 30000,
  pingInterval: 25000, // a gusher.ping after this long without hearing from the server
  pingTimeout: 10000, // and the connection is given up when no pong comes within this
  connectTimeout: 10000, // a handshake not done by then is given up, and tried again
};

/** States a client goes through; "state" events carry `{ previous, current }`. */
export const State = Object.freeze({
  CONNECTING: "connecting",
  CONNECTED: "connected",
  DISCONNECTED: "disconnected", // it will try again
  CLOSED: "closed", // close() was called
});

class Emitter {
  constructor() {
    this._handlers = new Map();
  }

  /** Call `handler` on every `event`; returns a function that stops it. */
  on(event, handler) {
    if (!this._handlers.has(event)) this._handlers.set(event, new Set());
    this._handlers.get(event).add(handler);
    return () => this.off(event, handler);
  }

  off(event, handler) {
    const handlers = this._handlers.get(event);
    if (handlers) handlers.delete(handler);
  }

  _emit(event, value) {
    const handlers = this._handlers.get(event);
    if (!handlers) return;
    for (const handler of [...handlers]) {
      try {
        handler(value);
      } catch (error) {
        // An application handler's bug must not stop delivery to the others.
        setTimeout(() => {
          throw error;
        });
      }
    }
  }
}

/**
 * One channel: "message" for each message pushed to it, "subscribed" with
 * `{ offset, epoch, recovered }` each time the server confirms it (again after
 * every reconnect), "unrecovered" when messages were missed that the server
 * could not replay, "error" with a reason when the server refuses it.
 */
export class Subscription extends Emitter {
  constructor(client, channel) {
    super();
    this.client = client;
    this.channel = channel;
    this.subscribed = false;
    this.offset = null; // the last offset seen (channels of apps that keep history)
    this.epoch = null;
  }

  /** Stop receiving this channel. */
  unsubscribe() {
    this.client._unsubscribe(this);
  }

  _since() {
    if (this.offset === null) return undefined;
    return { offset: this.offset, epoch: this.epoch || "" };
  }

  _confirmed(data) {
    this.subscribed = true;
    if (typeof data.epoch === "string") {
      // A history channel. Resumed and recovered: the replay follows and moves the offset on,
      // message by message. Otherwise the reply states where the channel is now.
      if (data.recovered === false) {
        this._emit("unrecovered", { offset: this.offset, epoch: this.epoch, now: { offset: data.offset, epoch: data.epoch } });
      }
      if (data.recovered !== true) this.offset = data.offset;
      this.epoch = data.epoch;
    }
    this._emit("subscribed", data);
  }

  _message(message) {
    if (typeof message.offset === "number") {
      // The server never sends an offset twice; one that does not move on is a numbering that
      // started again: the epoch is stale, and the next resume will say recovered: false.
      if (this.offset !== null && message.offset <= this.offset) this.epoch = null;
      this.offset = message.offset;
    }
    this._emit("message", message);
  }
}

/**
 * A connection to a gusher slave. Events: "state" ({ previous, current }),
 * "message" (every message pushed to this client, whatever its channel: user
 * and socket pushes too), "error" (a `gusher.error` the server sent).
 */
export class Gusher extends Emitter {
  /**
   * @param {string} url the slave's base URL, ws(s):// or http(s)://
   * @param {object} options `app`, `auth` (a string, or a function returning one or a promise of
   *   one, called at every connect), `WebSocket` (an implementation, for Node < 22), and the
   *   timings of DEFAULTS.
   */
  constructor(url, options = {}) {
    super();
    if (!options.app) throw new TypeError("gusher: options.app is required");
    this.url = String(url).replace(/^http/, "ws").replace(/\/+$/, "");
    this.options = { ...DEFAULTS, ...options };
    this.WebSocket = options.WebSocket || globalThis.WebSocket;
    if (!this.WebSocket) throw new TypeError("gusher: no WebSocket implementation; pass options.WebSocket");
    this.state = State.DISCONNECTED;
    this.socketId = null;
    this._subscriptions = new Map();
    this._pending = new Map(); // request id → subscription, until its reply
    this._nextId = 1;
    this._attempt = 0;
    this._ws = null;
    this._timers = {};
    this._lastHeard = 0;
    if (options.autoConnect !== false) this.connect();
  }

  /** Connect (again); called by the constructor unless `autoConnect: false`. */
  connect() {
    if (this.state === State.CONNECTING || this.state === State.CONNECTED) return;
    this._closedByUser = false;
    this._open();
  }

  /** Close for good: no reconnect until connect() is called again. */
  close() {
    this._closedByUser = true;
    this._clearTimers();
    if (this._ws) this._ws.close(1000, "client closed");
    this._ws = null;
    this._setState(State.CLOSED);
  }

  /** The subscription to `channel` (one per channel); subscribed now, and after each reconnect. */
  subscribe(channel) {
    let subscription = this._subscriptions.get(channel);
    if (!subscription) {
      subscription = new Subscription(this, channel);
      this._subscriptions.set(channel, subscription);
      if (this.state === State.CONNECTED) this._sendSubscribe(subscription);
    }
    return subscription;
  }

  async _open() {
    this._setState(State.CONNECTING);
    let auth;
    try {
      auth = typeof this.options.auth === "function" ? await this.options.auth() : this.options.auth;
    } catch (error) {
      this._emit("error", { reason: `auth failed: ${error && error.message}` });
      this._scheduleReconnect();
      return;
    }
    if (this._closedByUser) return;
    const query = auth === undefined || auth === null ? "" : `?auth=${encodeURIComponent(auth)}`;
    let ws;
    try {
      ws = new this.WebSocket(`${this.url}/ws/${encodeURIComponent(this.options.app)}${query}`);
    } catch (error) {
      this._emit("error", { reason: String(error && error.message) });
      this._scheduleReconnect();
      return;
    }
    this._ws = ws;
    this._timers.connect = setTimeout(() => {
      if (ws !== this._ws || ws.readyState === 1) return;
      this._lost(); // a handshake that hangs (a silent network) must not hold the client forever
      ws.close();
    }, this.options.connectTimeout);
    ws.onopen = () => {
      if (ws !== this._ws) return;
      clearTimeout(this._timers.connect);
      this._heard();
      this._setState(State.CONNECTED);
      for (const subscription of this._subscriptions.values()) this._sendSubscribe(subscription);
      this._timers.ping = setInterval(() => this._checkAlive(), Math.min(this.options.pingInterval, 5000));
    };
    ws.onmessage = (event) => {
      if (ws !== this._ws) return;
      this._heard();
      this._receive(typeof event.data === "string" ? event.data : String(event.data));
    };
    ws.onclose = () => {
      if (ws !== this._ws) return;
      this._lost();
    };
    ws.onerror = () => {}; // a close follows; it decides
  }

  _lost() {
    this._ws = null;
    this._clearTimers();
    this._pending.clear();
    for (const subscription of this._subscriptions.values()) subscription.subscribed = false;
    if (this._closedByUser) return;
    this._scheduleReconnect();
  }

  _scheduleReconnect() {
    this._setState(State.DISCONNECTED);
    const { minReconnectDelay, maxReconnectDelay } = this.options;
    const ceiling = Math.min(maxReconnectDelay, minReconnectDelay * 2 ** this._attempt);
    const delay = ceiling / 2 + Math.random() * (ceiling / 2); // jitter: storms spread out
    this._attempt += 1;
    this._timers.reconnect = setTimeout(() => {
      if (!this._closedByUser) this._open();
    }, delay);
  }

  _checkAlive() {
    const quiet = Date.now() - this._lastHeard;
    const { pingInterval, pingTimeout } = this.options;
    if (quiet > pingInterval + pingTimeout) {
      // No pong: the connection is dead even if the socket does not know it yet.
      const ws = this._ws;
      this._lost();
      if (ws) ws.close(4000, "ping timeout");
    } else if (quiet > pingInterval && !this._pingSent) {
      this._pingSent = true;
      this._send({ event: "gusher.ping", data: { id: `p${this._nextId++}` } });
    }
  }

  _heard() {
    this._lastHeard = Date.now();
    this._pingSent = false;
  }

  _sendSubscribe(subscription) {
    const id = `s${this._nextId++}`;
    this._pending.set(id, subscription);
    const data = { id, channel: subscription.channel };
    const since = subscription._since();
    if (since) data.since = since;
    this._send({ event: "gusher.subscribe", data });
  }

  _unsubscribe(subscription) {
    if (this._subscriptions.get(subscription.channel) !== subscription) return;
    this._subscriptions.delete(subscription.channel);
    if (this.state === State.CONNECTED) {
      this._send({ event: "gusher.unsubscribe", data: { id: `u${this._nextId++}`, channel: subscription.channel } });
    }
    subscription.subscribed = false;
  }

  _send(message) {
    if (this._ws && this._ws.readyState === 1) this._ws.send(JSON.stringify(message));
  }

  _receive(text) {
    let message;
    try {
      message = JSON.parse(text);
    } catch (_) {
      this._emit("message", { channel: null, event: null, data: text }); // a raw PUBLISH
      return;
    }
    if (message && typeof message === "object" && message.socket_id) this.socketId = message.socket_id;
    const event = message && message.event;
    const data = (message && message.data) || {};
    if (typeof event === "string" && event.startsWith("gusher.") && !("channel" in message)) {
      this._reply(event, data);
      return;
    }
    const subscription = message && this._subscriptions.get(message.channel);
    if (subscription) subscription._message(message);
    this._emit("message", message);
  }

  _reply(event, data) {
    if (event === "gusher.subscribe_succeeded" || event === "gusher.subscribe_error") {
      const subscription = this._pending.get(data.id);
      this._pending.delete(data.id);
      if (!subscription || this._subscriptions.get(subscription.channel) !== subscription) return;
      if (event === "gusher.subscribe_succeeded") {
        this._attempt = 0; // a working connection: the next loss starts the backoff afresh
        subscription._confirmed(data);
      } else {
        subscription._emit("error", data);
      }
    } else if (event === "gusher.error") {
      this._emit("error", data);
    }
  }

  _setState(current) {
    const previous = this.state;
    if (previous === current) return;
    this.state = current;
    this._emit("state", { previous, current });
  }

  _clearTimers() {
    clearInterval(this._timers.ping);
    clearTimeout(this._timers.reconnect);
    clearTimeout(this._timers.connect);
    this._timers = {};
  }
}

export default Gusher;
