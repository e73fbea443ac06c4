// Types of gusher.js: the browser and Node client of gusher.

export declare const State: {
  readonly CONNECTING: "connecting";
  readonly CONNECTED: "connected";
  readonly DISCONNECTED: "disconnected";
  readonly CLOSED: "closed";
};
export type StateName = (typeof State)[keyof typeof State];

/** A message pushed to a channel; `offset` on channels of apps that keep history. */
export interface Message<T = unknown> {
  channel: string;
  event: string;
  data: T;
  offset?: number;
}

/** The server's confirmation of a subscription (again after every reconnect). */
export interface Subscribed {
  id: string;
  channel: string;
  /** History channels: the channel's latest offset when the subscription took effect. */
  offset?: number;
  epoch?: string;
  /** Present when the subscribe resumed: false means messages were missed for good. */
  recovered?: boolean;
  socket_id?: string;
}

export interface Unrecovered {
  /** Where this client was. */
  offset: number | null;
  epoch: string | null;
  /** Where the channel is now. */
  now: { offset: number; epoch: string };
}

export interface Refusal {
  id?: string;
  channel?: string;
  reason: string;
}

type Unlisten = () => void;

export declare class Subscription {
  readonly client: Gusher;
  readonly channel: string;
  readonly subscribed: boolean;
  /** The last offset seen on a history channel (null before any). */
  readonly offset: number | null;
  readonly epoch: string | null;
  on(event: "message", handler: (message: Message) => void): Unlisten;
  on(event: "subscribed", handler: (reply: Subscribed) => void): Unlisten;
  /** Messages were missed that the server could not replay: reload this channel's state. */
  on(event: "unrecovered", handler: (info: Unrecovered) => void): Unlisten;
  on(event: "error", handler: (refusal: Refusal) => void): Unlisten;
  off(event: string, handler: (value: any) => void): void;
  unsubscribe(): void;
}

export interface WebSocketLike {
  readonly readyState: number;
  onopen: ((event: any) => void) | null;
  onmessage: ((event: { data: any }) => void) | null;
  onclose: ((event: any) => void) | null;
  onerror: ((event: any) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

export interface GusherOptions {
  /** The app key. */
  app: string;
  /** What the app's webhook (or JWT check) receives as `auth`; a function is called at every connect. */
  auth?: string | (() => string | Promise<string>);
  /** A WebSocket implementation (Node < 22: `import WebSocket from "ws"`). */
  WebSocket?: new (url: string) => WebSocketLike;
  /** Connect in the constructor (default true). */
  autoConnect?: boolean;
  minReconnectDelay?: number;
  maxReconnectDelay?: number;
  pingInterval?: number;
  pingTimeout?: number;
  /** A handshake not done within this (ms) is given up and tried again (10 s). */
  connectTimeout?: number;
}

export declare class Gusher {
  constructor(url: string, options: GusherOptions);
  readonly state: StateName;
  /** This connection's name (`{worker}.{number}`), for pushes to one socket. */
  readonly socketId: string | null;
  connect(): void;
  close(): void;
  subscribe(channel: string): Subscription;
  on(event: "state", handler: (change: { previous: StateName; current: StateName }) => void): Unlisten;
  /** Every message pushed to this client, user and socket pushes included. */
  on(event: "message", handler: (message: Message) => void): Unlisten;
  on(event: "error", handler: (error: { reason: string }) => void): Unlisten;
  off(event: string, handler: (value: any) => void): void;
}

export default Gusher;
