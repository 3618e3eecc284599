// Shared helpers of the psi-sampler frontend extensions (no extension is registered here).
//
// Rules every psi extension follows: hooks are chained (the original runs first), DOM is built with
// createElement/textContent only (never innerHTML), listeners are removed when the node goes away,
// and only the prototypes of psi's own node types are patched (in beforeRegisterNodeDef).

/** Replace `target[name]` by a function that calls the original first, then `extra` (same `this`). */
export function chainCallback(target, name, extra) {
  const original = target[name];
  target[name] = function (...args) {
    const result = typeof original === "function" ? original.apply(this, args) : undefined;
    extra.apply(this, args);
    return result;
  };
}

/** A DOM element: el("div", {className: "x", style: {...}, title: "..."}, child, "text", ...). */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "style") Object.assign(node.style, value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node[key] = value;
  }
  for (const child of children) {
    if (child == null) continue;
    node.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

/** Listeners that can all be removed at once: `add(target, type, fn, options)`, `removeAll()`. */
export class Listeners {
  constructor() {
    this.entries = [];
  }

  add(target, type, fn, options) {
    target.addEventListener(type, fn, options);
    this.entries.push([target, type, fn, options]);
    return fn;
  }

  removeAll() {
    for (const [target, type, fn, options] of this.entries.splice(0)) {
      target.removeEventListener(type, fn, options);
    }
  }
}

/** A canvas 2D context scaled for the device pixel ratio, sized to `width` x `height` CSS pixels. */
export function sizedContext(canvas, width, height) {
  const ratio = window.devicePixelRatio || 1;
  const w = Math.max(1, Math.round(width));
  const h = Math.max(1, Math.round(height));
  if (canvas.width !== Math.round(w * ratio) || canvas.height !== Math.round(h * ratio)) {
    canvas.width = Math.round(w * ratio);
    canvas.height = Math.round(h * ratio);
  }
  canvas.style.width = `${w}px`;
  canvas.style.height = `${h}px`;
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  return ctx;
}

/** Short number for labels: 3 significant digits, "–" for missing or non-finite values. */
export function fmt(value, digits = 3) {
  if (value == null || !Number.isFinite(value)) return "–";
  if (value === 0) return "0";
  const size = Math.abs(value);
  if (size >= 1e4 || size < 1e-3) return value.toExponential(1);
  return String(Number(value.toPrecision(digits)));
}

/** The widget of `node` named `name`, or undefined. */
export function findWidget(node, name) {
  return node.widgets?.find((w) => w.name === name);
}

/** Run `fn(widget, value)` after the callback of each widget of `node` named in `names`.
 *
 * Every user edit of a widget ends in its callback, whichever renderer draws the node: LiteGraph's
 * canvas widgets call it from setValue, the multiline text widget from its textarea's input event,
 * and Vue-rendered nodes (Nodes 2.0) write the value and then call it. The draw loop is no place to
 * watch for edits: LiteGraph does not draw Vue-rendered nodes. The callbacks are chained on these
 * widget instances only. Returns a function that stops the calls (the chained callbacks stay, inert). */
export function onWidgetChange(node, names, fn) {
  let active = true;
  for (const name of names) {
    const widget = findWidget(node, name);
    if (!widget) continue;
    chainCallback(widget, "callback", function (value) {
      if (active) fn(widget, value);
    });
  }
  return () => {
    active = false;
  };
}

/** Grow `node` to at least its computed minimum size (after a DOM widget's content grew). */
export function fitNode(node) {
  const min = node.computeSize?.();
  if (min && node.size && node.size[1] < min[1]) node.setSize([Math.max(node.size[0], min[0]), min[1]]);
  node.setDirtyCanvas?.(true, true);
}

/** The per-node objects of one extension (charts, editors) by node id, stored on the node as
 * `node[property]`; each has a destroy() that removes its listeners. */
export class NodeRegistry {
  constructor(property) {
    this.property = property;
    this.byId = new Map();
  }

  get(nodeId) {
    return this.byId.get(String(nodeId)) ?? null;
  }

  values() {
    return this.byId.values();
  }

  register(node) {
    const item = node[this.property];
    if (!item || node.id == null || node.id === -1) return;
    this.forget(item);
    this.byId.set(String(node.id), item);
  }

  forget(item) {
    for (const [id, value] of this.byId) if (value === item) this.byId.delete(id);
  }

  /** Chain the node type's onAdded/onConfigure (node ids are final once a node joins a graph or a
   * workflow is loaded: register again) and onRemoved (forget and destroy). `configured(item)` runs
   * after the original onConfigure, when the widget values of a workflow have been restored. */
  track(nodeType, configured) {
    const registry = this;
    chainCallback(nodeType.prototype, "onAdded", function () {
      registry.register(this);
    });
    chainCallback(nodeType.prototype, "onConfigure", function () {
      registry.register(this);
      if (this[registry.property]) configured?.(this[registry.property]);
    });
    chainCallback(nodeType.prototype, "onRemoved", function () {
      const item = this[registry.property];
      if (!item) return;
      registry.forget(item);
      item.destroy();
      this[registry.property] = null;
    });
  }
}
