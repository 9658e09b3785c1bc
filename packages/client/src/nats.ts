/** `@gridlink/client/nats`: address discovery through the grid's announcements in NATS JetStream KV. */
export { natsAddressFinder, type NatsAddressFinder, type NatsAddressFinderOptions } from './address-finder-nats.js';
