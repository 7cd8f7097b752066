/**
 * A first-in first-out queue on a ring buffer that only grows. Steady use allocates nothing:
 * the scheduler pushes and shifts on it for every packet, and the alternatives allocate there
 * (a Set reallocates its table as entries come and go, and V8 allocates a long-lived Set's new
 * table straight in old space, which only a full mark-compact frees).
 */
export class Fifo<T> {
  #items: Array<T | undefined>;
  /** Index of the oldest item. */
  #head = 0;
  #length = 0;

  constructor(initialCapacity = 16) {
    this.#items = new Array<T | undefined>(Math.max(1, initialCapacity)).fill(undefined);
  }

  get length(): number {
    return this.#length;
  }

  push(item: T): void {
    if (this.#length === this.#items.length) this.#grow();
    this.#items[(this.#head + this.#length) % this.#items.length] = item;
    this.#length++;
  }

  /** The oldest item, left in the queue, or undefined when empty. */
  peek(): T | undefined {
    return this.#length === 0 ? undefined : this.#items[this.#head];
  }

  /** Removes and returns the oldest item, or undefined when empty. */
  shift(): T | undefined {
    if (this.#length === 0) return undefined;
    const item = this.#items[this.#head];
    // Not kept alive by the queue once taken.
    this.#items[this.#head] = undefined;
    this.#head = (this.#head + 1) % this.#items.length;
    this.#length--;
    return item;
  }

  clear(): void {
    this.#items.fill(undefined);
    this.#head = 0;
    this.#length = 0;
  }

  #grow(): void {
    const grown = new Array<T | undefined>(this.#items.length * 2).fill(undefined);
    for (let i = 0; i < this.#length; i++) grown[i] = this.#items[(this.#head + i) % this.#items.length];
    this.#items = grown;
    this.#head = 0;
  }
}
