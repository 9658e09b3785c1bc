/** Where a node is in its life; shared by reference between the node's parts. */
export type LifeState = 'new' | 'running' | 'stopping' | 'stopped';

export class Lifecycle {
  state: LifeState = 'new';
}
