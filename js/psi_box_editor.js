// Layout box editor on the Ψ layout reward node (PsiLayoutReward).
//
// A canvas with the image's aspect ratio (the node's width/height widgets): drag on empty space to
// draw a box, drag a box to move it, drag its corners or edges to resize it; Delete (or the row's ×
// button) removes the selected box. Each box has one phrase, edited in the list under the canvas.
// The boxes are stored in the node's `boxes` STRING widget as JSON
//   [{"phrase": "a cat", "box": [x0, y0, x1, y1]}, ...]
// (normalised to [0, 1], x to the right, y downwards; in pixels when the units widget says "pixels"),
// so workflows save, reload and queue exactly what the editor shows. The widgets are the truth: text
// typed into `boxes` and edits of units/width/height are picked up by the editor (through the widgets'
// callbacks, which both the classic canvas and Vue-rendered nodes call), which then shows the boxes as
// the reward will read them. Values set by a script without the callback are read again before the
// next edit, or at once by editor.sync().
//
// For tests and other extensions: app.extensions entry "psi.box_editor" has editorFor(nodeId); an
// editor has boxes(), addBox(phrase, box), setBox(i, box), setPhrase(i, phrase), deleteBox(i),
// select(i), sync(), drawn() and canvas.

import { app } from "../../scripts/app.js";
import {
  Listeners, NodeRegistry, chainCallback, el, findWidget, fitNode, onWidgetChange, sizedContext,
} from "./psi_common.js";

const EXTENSION = "psi.box_editor";
const NODE_TYPE = "PsiLayoutReward";
const WIDGET = "psi_box_editor";
const PALETTE = ["#ff6b6b", "#4dabf7", "#51cf66", "#fcc419", "#cc5de8", "#ff922b", "#20c997", "#f06595"];
const HANDLE = 7; // px: grab distance of a corner or an edge
const MIN_SIZE = 0.01; // normalised: smaller drawn boxes are dropped
const CANVAS_MIN = 140;
const ROW_H = 26;
const DEFAULT_PHRASE = "object";
const WATCHED = ["boxes", "units", "width", "height"]; // the widgets the editor shows

const editors = new NodeRegistry("psiBoxEditor"); // node id -> BoxEditor

const clamp01 = (v) => Math.min(1, Math.max(0, v));
const round4 = (v) => Math.round(v * 1e4) / 1e4;

/** [x0, y0, x1, y1] ordered and clamped to [0, 1]. */
function normaliseBox(box) {
  const [a, b, c, d] = box.map((v) => clamp01(Number(v)));
  return [Math.min(a, c), Math.min(b, d), Math.max(a, c), Math.max(b, d)];
}

/** Boxes from the widget text: {boxes, error}; pixel boxes are normalised with (width, height). */
export function parseBoxes(text, units, width, height) {
  if (text == null || String(text).trim() === "") return { boxes: [], error: null };
  let data;
  try {
    data = JSON.parse(text);
  } catch (err) {
    return { boxes: null, error: `boxes is not valid JSON (${err.message})` };
  }
  if (!Array.isArray(data)) return { boxes: null, error: "boxes must be a JSON list of {phrase, box}" };
  const rows = [];
  for (const [i, item] of data.entries()) {
    const box = item?.box ?? item?.bbox;
    if (!Array.isArray(box) || box.length !== 4 || !box.every((v) => Number.isFinite(Number(v)))) {
      return { boxes: null, error: `entry ${i} needs "box": [x0, y0, x1, y1]` };
    }
    rows.push({ phrase: typeof item.phrase === "string" ? item.phrase : "", box: box.map(Number) });
  }
  const pixels = units === "pixels" || (units !== "normalized" && rows.some((r) => r.box.some((v) => v > 1)));
  for (const row of rows) {
    if (pixels) row.box = [row.box[0] / width, row.box[1] / height, row.box[2] / width, row.box[3] / height];
    row.box = normaliseBox(row.box);
  }
  return { boxes: rows, error: null };
}

/** The widget text for normalised boxes (in pixels when units is "pixels"). */
export function serialiseBoxes(boxes, units, width, height) {
  const rows = boxes.map(({ phrase, box }) => {
    const b = units === "pixels"
      ? [box[0] * width, box[1] * height, box[2] * width, box[3] * height].map((v) => Math.round(v))
      : box.map(round4);
    return { phrase, box: b };
  });
  return JSON.stringify(rows);
}

class BoxEditor {
  constructor(node) {
    this.node = node;
    this.listeners = new Listeners();
    this.items = [];
    this.selected = -1;
    this.drag = null;
    this.lastText = null;
    this.lastAspect = null;
    this.error = null;

    // the canvas is out of the flow, centred in the stage: its size follows the stage, never the other
    // way round (a Vue-rendered node sizes the widget by its content)
    this.canvas = el("canvas", {
      className: "psi-box-editor-canvas", tabIndex: 0,
      style: { display: "block", position: "absolute", left: "0", top: "0",
               cursor: "crosshair", outline: "none", touchAction: "none" },
    });
    this.stage = el("div", {
      className: "psi-box-editor-stage",
      style: { position: "relative", flex: "1 1 auto", minHeight: `${CANVAS_MIN}px`, overflow: "hidden" },
    }, this.canvas);
    this.message = el("div", {
      className: "psi-box-editor-message",
      style: { font: "11px sans-serif", color: "#aaa", padding: "2px 4px" },
    });
    this.list = el("div", { className: "psi-box-editor-list", style: { flex: "0 0 auto", overflowY: "auto" } });
    this.element = el("div", {
      className: "psi-box-editor",
      style: { display: "flex", flexDirection: "column", boxSizing: "border-box", gap: "2px" },
    }, this.message, this.stage, this.list);

    this.widget = node.addDOMWidget(WIDGET, "psi-box-editor", this.element, {
      serialize: false,
      hideOnZoom: false,
      getMinHeight: () => CANVAS_MIN + 24 + this.items.length * ROW_H,
    });
    this.widget.serialize = false;

    const c = this.canvas;
    this.listeners.add(c, "pointerdown", (e) => this.onPointerDown(e));
    this.listeners.add(c, "pointermove", (e) => this.onPointerMove(e));
    this.listeners.add(c, "pointerup", (e) => this.onPointerUp(e));
    this.listeners.add(c, "pointercancel", (e) => this.onPointerUp(e));
    this.listeners.add(c, "keydown", (e) => this.onKeyDown(e));
    this.resizeObserver = new ResizeObserver(() => this.draw());
    this.resizeObserver.observe(this.stage);
    this.unwatch = onWidgetChange(node, WATCHED, () => this.sync(false));
    this.sync(true);
  }

  // ---------------------------------------------------------------- widget <-> boxes

  settings() {
    const width = Number(findWidget(this.node, "width")?.value) || 512;
    const height = Number(findWidget(this.node, "height")?.value) || 512;
    const units = String(findWidget(this.node, "units")?.value ?? "normalized");
    return { width, height, units };
  }

  /** Re-read the boxes widget when its text, the units or the image size changed (or always with
   * force): pixel boxes move with width/height, and the units say how the numbers are read. */
  sync(force = false) {
    if (this.removed) return;
    const widget = findWidget(this.node, "boxes");
    const text = widget ? String(widget.value ?? "") : "";
    const { width, height, units } = this.settings();
    const key = `${width}x${height}:${units}`;
    if (!force && text === this.lastText && key === this.lastAspect) return;
    this.lastAspect = key;
    this.lastText = text;
    const parsed = parseBoxes(text, units, width, height);
    this.error = parsed.error;
    if (parsed.boxes) {
      this.items = parsed.boxes;
      if (this.selected >= this.items.length) this.selected = -1;
      if (this.drag && !this.items[this.drag.index]) this.drag = null;
      this.renderList();
    }
    this.draw();
    this.updateMessage();
  }

  /** Write the boxes into the widget (what the workflow saves and the reward node receives). */
  commit() {
    const widget = findWidget(this.node, "boxes");
    if (!widget) return;
    const { width, height, units } = this.settings();
    const text = serialiseBoxes(this.items, units, width, height);
    this.lastText = text;
    this.error = null;
    if (widget.value !== text) {
      widget.value = text;
      widget.callback?.(text);
    }
    this.updateMessage();
    this.node.setDirtyCanvas?.(true, true);
    app.graph?.setDirtyCanvas?.(true, true);
  }

  updateMessage() {
    if (this.error) {
      this.message.style.color = "#ff8080";
      this.message.textContent = `${this.error}; drawing replaces it`;
      return;
    }
    this.message.style.color = "#aaa";
    this.message.textContent = this.items.length
      ? `${this.items.length} box${this.items.length > 1 ? "es" : ""} · drag to move, corners to resize, Delete removes`
      : "Drag on the canvas to draw a box (one phrase per box)";
  }

  // ---------------------------------------------------------------- public editing API

  boxes() {
    return this.items.map(({ phrase, box }) => ({ phrase, box: [...box] }));
  }

  addBox(phrase, box) {
    this.sync(false);
    this.items.push({ phrase: String(phrase ?? DEFAULT_PHRASE), box: normaliseBox(box) });
    this.selected = this.items.length - 1;
    this.changed(true);
    return this.selected;
  }

  setBox(index, box) {
    this.sync(false);
    if (!this.items[index]) return;
    this.items[index].box = normaliseBox(box);
    this.changed(false);
  }

  setPhrase(index, phrase) {
    this.sync(false);
    if (!this.items[index]) return;
    this.items[index].phrase = String(phrase);
    const input = this.list.children[index]?.querySelector("input");
    if (input && input.value !== phrase) input.value = phrase;
    this.commit();
  }

  deleteBox(index) {
    this.sync(false);
    if (!this.items[index]) return;
    this.items.splice(index, 1);
    if (this.selected === index) this.selected = -1;
    else if (this.selected > index) this.selected -= 1;
    this.changed(true);
  }

  select(index) {
    this.selected = this.items[index] ? index : -1;
    this.renderList();
    this.draw();
  }

  changed(listChanged) {
    if (listChanged) this.renderList();
    this.draw();
    this.commit();
  }

  // ---------------------------------------------------------------- list of phrases

  renderList() {
    const rows = this.items.map((item, i) => {
      const input = el("input", {
        type: "text", value: item.phrase, placeholder: "phrase, e.g. a red car",
        title: "The phrase the detector looks for in this box",
        style: { flex: "1 1 auto", minWidth: "0", font: "12px sans-serif", background: "#222", color: "#ddd",
                 border: `1px solid ${i === this.selected ? PALETTE[i % PALETTE.length] : "#444"}`,
                 borderRadius: "3px", padding: "1px 4px" },
      });
      input.addEventListener("input", () => {
        this.items[i].phrase = input.value;
        this.draw();
        this.commit();
      });
      input.addEventListener("focus", () => {
        if (this.selected !== i) {
          this.selected = i;
          this.draw();
        }
      });
      input.addEventListener("keydown", (e) => e.stopPropagation());
      const remove = el("button", {
        type: "button", textContent: "×", title: "Delete this box",
        className: "psi-box-editor-delete",
        style: { flex: "0 0 auto", width: "22px", background: "#333", color: "#ddd", border: "1px solid #555",
                 borderRadius: "3px", cursor: "pointer" },
      });
      remove.addEventListener("click", () => this.deleteBox(i));
      const swatch = el("span", {
        style: { flex: "0 0 auto", width: "10px", height: "10px", borderRadius: "2px",
                 background: PALETTE[i % PALETTE.length] },
      });
      return el("div", {
        className: "psi-box-editor-row",
        style: { display: "flex", alignItems: "center", gap: "4px", height: `${ROW_H - 2}px`, padding: "0 4px" },
      }, swatch, input, remove);
    });
    this.list.replaceChildren(...rows);
    fitNode(this.node);
  }

  // ---------------------------------------------------------------- canvas geometry and drawing

  /** Canvas size in CSS pixels: the largest rectangle of the image's aspect that fits the stage. */
  canvasSize() {
    const { width, height } = this.settings();
    const aspect = width / height;
    const availW = Math.max(40, (this.stage.clientWidth || 300) - 4);
    const availH = Math.max(40, (this.stage.clientHeight || CANVAS_MIN) - 4);
    let w = availW;
    let h = w / aspect;
    if (h > availH) {
      h = availH;
      w = h * aspect;
    }
    return [Math.floor(w), Math.floor(h)];
  }

  draw() {
    if (this.removed) return;
    const [w, h] = this.canvasSize();
    this.size = [w, h];
    const ctx = sizedContext(this.canvas, w, h);
    this.canvas.style.left = `${Math.max(0, Math.floor((this.stage.clientWidth - w) / 2))}px`;
    this.canvas.style.top = `${Math.max(0, Math.floor((this.stage.clientHeight - h) / 2))}px`;
    ctx.fillStyle = "#2b2b2b";
    ctx.fillRect(0, 0, w, h);
    ctx.strokeStyle = "rgba(255, 255, 255, 0.08)";
    ctx.lineWidth = 1;
    for (let i = 1; i < 4; i++) {
      ctx.beginPath();
      ctx.moveTo(Math.round((i * w) / 4) + 0.5, 0);
      ctx.lineTo(Math.round((i * w) / 4) + 0.5, h);
      ctx.moveTo(0, Math.round((i * h) / 4) + 0.5);
      ctx.lineTo(w, Math.round((i * h) / 4) + 0.5);
      ctx.stroke();
    }
    const { width, height } = this.settings();
    ctx.fillStyle = "rgba(255, 255, 255, 0.35)";
    ctx.font = "10px sans-serif";
    ctx.textAlign = "right";
    ctx.textBaseline = "bottom";
    const label = `${width} × ${height}`;
    ctx.fillText(label, w - 4, h - 3);
    this.items.forEach((item, i) => this.drawBox(ctx, item, i, w, h));
    this.lastDrawn = {
      size: [w, h], label, selected: this.selected,
      boxes: this.items.map((item, i) => ({
        phrase: item.phrase, color: PALETTE[i % PALETTE.length],
        rect: [item.box[0] * w, item.box[1] * h, (item.box[2] - item.box[0]) * w, (item.box[3] - item.box[1]) * h],
      })),
    };
  }

  /** What the last draw() put on the canvas, in CSS pixels of the canvas: {size, label, selected,
   * boxes: [{phrase, color, rect: [x, y, w, h]}]} (for tests and tools). */
  drawn() {
    const d = this.lastDrawn;
    return d ? { ...d, boxes: d.boxes.map((b) => ({ ...b, rect: [...b.rect] })) } : null;
  }

  drawBox(ctx, item, i, w, h) {
    const color = PALETTE[i % PALETTE.length];
    const [x0, y0, x1, y1] = item.box;
    const rect = [x0 * w, y0 * h, (x1 - x0) * w, (y1 - y0) * h];
    const selected = i === this.selected;
    ctx.globalAlpha = selected ? 0.28 : 0.16;
    ctx.fillStyle = color;
    ctx.fillRect(...rect);
    ctx.globalAlpha = 1;
    ctx.strokeStyle = color;
    ctx.lineWidth = selected ? 2.5 : 1.5;
    ctx.strokeRect(...rect);
    const label = item.phrase || "(no phrase)";
    ctx.font = "11px sans-serif";
    ctx.textAlign = "left";
    ctx.textBaseline = "top";
    const textW = Math.min(ctx.measureText(label).width + 6, Math.max(rect[2], 24));
    ctx.fillStyle = color;
    ctx.fillRect(rect[0], rect[1], textW, 14);
    ctx.fillStyle = "#111";
    ctx.save();
    ctx.beginPath();
    ctx.rect(rect[0], rect[1], textW, 14);
    ctx.clip();
    ctx.fillText(label, rect[0] + 3, rect[1] + 1);
    ctx.restore();
    if (selected) {
      ctx.fillStyle = "#fff";
      for (const [hx, hy] of [[x0, y0], [x1, y0], [x0, y1], [x1, y1]]) {
        ctx.fillRect(hx * w - 3, hy * h - 3, 6, 6);
      }
    }
  }

  /** Pointer position in normalised image coordinates (may lie outside [0, 1] while dragging). */
  point(e) {
    const rect = this.canvas.getBoundingClientRect();
    return [(e.clientX - rect.left) / (rect.width || 1), (e.clientY - rect.top) / (rect.height || 1)];
  }

  /** What is under the pointer: {index, handle} with handle "move" or a side set like "nw", "e". */
  hit([px, py]) {
    const rect = this.canvas.getBoundingClientRect();
    const tx = HANDLE / (rect.width || 1);
    const ty = HANDLE / (rect.height || 1);
    const order = [...this.items.keys()].reverse();
    if (this.selected >= 0) order.unshift(this.selected);
    for (const i of order) {
      const [x0, y0, x1, y1] = this.items[i].box;
      if (px < x0 - tx || px > x1 + tx || py < y0 - ty || py > y1 + ty) continue;
      let handle = "";
      if (Math.abs(py - y0) <= ty) handle += "n";
      else if (Math.abs(py - y1) <= ty) handle += "s";
      if (Math.abs(px - x0) <= tx) handle += "w";
      else if (Math.abs(px - x1) <= tx) handle += "e";
      if (handle) return { index: i, handle };
      if (px >= x0 && px <= x1 && py >= y0 && py <= y1) return { index: i, handle: "move" };
    }
    return null;
  }

  onPointerDown(e) {
    if (e.button !== 0) return;
    e.preventDefault();
    e.stopPropagation();
    this.sync(false); // a script may have set the widgets without their callbacks
    this.canvas.focus({ preventScroll: true });
    try {
      this.canvas.setPointerCapture(e.pointerId);
    } catch {
      // synthetic events have no active pointer to capture
    }
    const p = this.point(e);
    const target = this.hit(p);
    if (target) {
      this.selected = target.index;
      this.drag = { mode: target.handle, index: target.index, start: p, box: [...this.items[target.index].box] };
      this.renderList();
    } else {
      const start = [clamp01(p[0]), clamp01(p[1])];
      this.items.push({ phrase: DEFAULT_PHRASE, box: [start[0], start[1], start[0], start[1]] });
      this.selected = this.items.length - 1;
      this.drag = { mode: "draw", index: this.selected, start };
    }
    this.draw();
  }

  onPointerMove(e) {
    const p = this.point(e);
    if (!this.drag) {
      const target = this.hit(p);
      const cursors = { move: "move", n: "ns-resize", s: "ns-resize", e: "ew-resize", w: "ew-resize",
                        nw: "nwse-resize", se: "nwse-resize", ne: "nesw-resize", sw: "nesw-resize" };
      this.canvas.style.cursor = target ? cursors[target.handle] : "crosshair";
      return;
    }
    e.preventDefault();
    e.stopPropagation();
    const { mode, index, start, box } = this.drag;
    const item = this.items[index];
    if (mode === "draw") {
      item.box = normaliseBox([start[0], start[1], p[0], p[1]]);
    } else if (mode === "move") {
      const dx = Math.min(Math.max(p[0] - start[0], -box[0]), 1 - box[2]);
      const dy = Math.min(Math.max(p[1] - start[1], -box[1]), 1 - box[3]);
      item.box = [box[0] + dx, box[1] + dy, box[2] + dx, box[3] + dy];
    } else {
      const next = [...box];
      if (mode.includes("w")) next[0] = p[0];
      if (mode.includes("e")) next[2] = p[0];
      if (mode.includes("n")) next[1] = p[1];
      if (mode.includes("s")) next[3] = p[1];
      item.box = normaliseBox(next);
    }
    this.draw();
  }

  onPointerUp(e) {
    if (!this.drag) return;
    e.stopPropagation();
    try {
      this.canvas.releasePointerCapture(e.pointerId);
    } catch {
      // not captured (synthetic events)
    }
    const { mode, index } = this.drag;
    this.drag = null;
    const [x0, y0, x1, y1] = this.items[index].box;
    if (mode === "draw" && (x1 - x0 < MIN_SIZE || y1 - y0 < MIN_SIZE)) {
      this.items.splice(index, 1); // a click on empty space: deselect
      this.selected = -1;
      this.renderList();
      this.draw();
      return;
    }
    this.changed(true);
    if (mode === "draw") this.list.children[index]?.querySelector("input")?.select();
  }

  onKeyDown(e) {
    if ((e.key === "Delete" || e.key === "Backspace") && this.selected >= 0) {
      e.preventDefault();
      e.stopPropagation();
      this.deleteBox(this.selected);
    } else if (e.key === "Escape") {
      e.stopPropagation();
      this.select(-1);
    }
  }

  destroy() {
    this.removed = true;
    this.unwatch();
    this.resizeObserver.disconnect();
    this.listeners.removeAll();
    this.list.replaceChildren();
  }
}

const extension = {
  name: EXTENSION,

  /** The box editor of node `nodeId`, or null. */
  editorFor(nodeId) {
    return editors.get(nodeId);
  },

  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData?.name !== NODE_TYPE) return;
    chainCallback(nodeType.prototype, "onNodeCreated", function () {
      if (!findWidget(this, "boxes")) return;
      this.psiBoxEditor = new BoxEditor(this);
      editors.register(this);
      const [w, h] = this.size;
      this.setSize([Math.max(w, 340), Math.max(h, this.computeSize()[1])]);
    });
    // widget values were just restored from a workflow (no widget callbacks run): read them again
    editors.track(nodeType, (editor) => editor.sync(true));
    // joining a graph may swap in values the frontend kept for this node id (its widget value store)
    chainCallback(nodeType.prototype, "onAdded", function () {
      this.psiBoxEditor?.sync(false);
    });
  },
};

app.registerExtension(extension);
