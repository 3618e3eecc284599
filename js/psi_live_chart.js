// Live chart on the Ψ sampler nodes: ESS and reward per SMC step (psi.smc_step events), MCMC
// acceptance and reward per iteration (psi.mcmc_step), drawn while the node runs and cleared when a
// new run starts (execution_start, or a step number that goes back). Any other number an event
// carries per step (sigma, the MCMC step size, whatever a sampler adds later) is drawn in a third
// panel, each series scaled to its own range, with its latest value in the legend.
//
// The chart is a DOM widget redrawn on events and on resizes, never from the node's draw loop, so it
// works the same whether LiteGraph or Vue (Nodes 2.0) renders the node.
//
// Events name the executing node. PsiSMCSamplerCustom runs inside SamplerCustomAdvanced, so events
// from a SamplerCustomAdvanced node go to the PsiSMCSamplerCustom linked to its inputs.
//
// For tests and other extensions: app.extensions entry "psi.live_chart" has chartData(nodeId) and
// chartDrawn(nodeId).

import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { NodeRegistry, chainCallback, el, fmt, sizedContext } from "./psi_common.js";

const EXTENSION = "psi.live_chart";
const CHART_NODES = new Set(["PsiInitialSampler", "PsiSMCSampler", "PsiSMCSamplerCustom"]);
const WIDGET = "psi_live_chart";
const HEIGHT = 240;
const STATUS_H = 16;
/** Event fields that are not extra per-step series: bookkeeping, the series drawn in the first two
 * panels, and sigma_next (the next step's sigma: the sigma series shifted by one). */
const NOT_EXTRA = {
  smc: new Set(["node", "prompt_id", "step", "total", "num_particles", "ess", "ess_before", "resampled",
                "reward_mean", "reward_max", "sigma_next"]),
  mcmc: new Set(["node", "prompt_id", "iteration", "total", "burn_in", "acceptance", "reward_mean",
                 "reward_max"]),
};
const EXTRA_COLORS = ["#fcc419", "#cc5de8", "#ff922b", "#20c997", "#f06595", "#adb5bd"];
const COLORS = {
  background: "rgba(0, 0, 0, 0.28)",
  frame: "#666",
  grid: "rgba(255, 255, 255, 0.08)",
  text: "#bbb",
  ess: "#4aa3ff",
  essBefore: "rgba(74, 163, 255, 0.45)",
  resample: "#ff5a5a",
  mean: "#4aa3ff",
  max: "#5fd068",
  burnIn: "rgba(255, 255, 255, 0.07)",
};

/** node id -> LiveChart */
const charts = new NodeRegistry("psiLiveChart");

function finite(value) {
  return typeof value === "number" && Number.isFinite(value) ? value : null;
}

/** The extra per-step numbers of an event: every top-level finite number not in `skip`. */
function extraValues(detail, skip) {
  const out = {};
  for (const [key, value] of Object.entries(detail)) {
    if (!skip.has(key) && finite(value) !== null) out[key] = value;
  }
  return out;
}

/** Extra series of one kind of event: names in order of first appearance, running min/max. */
class ExtraSeries {
  constructor() {
    this.ranges = new Map(); // name -> [min, max]
  }

  add(values) {
    for (const [name, value] of Object.entries(values)) {
      const range = this.ranges.get(name);
      if (!range) this.ranges.set(name, [value, value]);
      else {
        if (value < range[0]) range[0] = value;
        if (value > range[1]) range[1] = value;
      }
    }
  }

  names() {
    return [...this.ranges.keys()];
  }
}

class LiveChart {
  constructor(node) {
    this.node = node;
    // the canvas is out of the flow: its size follows the plot area, never the other way round (a
    // Vue-rendered node sizes the widget by its content)
    this.canvas = el("canvas", {
      className: "psi-live-chart-canvas", style: { display: "block", position: "absolute", left: "0", top: "0" },
    });
    this.plot = el("div", {
      className: "psi-live-chart-plot", style: { position: "relative", flex: "1 1 auto", minHeight: "0" },
    }, this.canvas);
    this.status = el("div", {
      className: "psi-live-chart-status",
      style: { font: "11px sans-serif", color: COLORS.text, whiteSpace: "nowrap", overflow: "hidden",
               textOverflow: "ellipsis", padding: "0 4px", height: `${STATUS_H}px`, lineHeight: `${STATUS_H}px`,
               flex: `0 0 ${STATUS_H}px` },
    });
    this.element = el("div", {
      className: "psi-live-chart",
      style: { display: "flex", flexDirection: "column", boxSizing: "border-box", padding: "2px 0",
               minHeight: `${HEIGHT}px` },
    }, this.plot, this.status);
    this.reset(null);
    this.widget = node.addDOMWidget(WIDGET, "psi-live-chart", this.element, {
      serialize: false,
      hideOnZoom: false,
      getMinHeight: () => HEIGHT,
      getMaxHeight: () => HEIGHT * 2,
    });
    this.widget.serialize = false;
    this.resizeObserver = new ResizeObserver(() => this.draw());
    this.resizeObserver.observe(this.plot);
  }

  reset(promptId) {
    this.promptId = promptId;
    this.smc = [];
    this.mcmc = [];
    this.extra = { smc: new ExtraSeries(), mcmc: new ExtraSeries() };
    this.status.textContent = "Ψ live chart: waiting for a run";
    this.scheduleDraw();
  }

  /** Data for tests and tools: copies of the points received since the last reset. */
  data() {
    const copy = (p) => ({ ...p, extra: { ...p.extra } });
    return { promptId: this.promptId, smc: this.smc.map(copy), mcmc: this.mcmc.map(copy) };
  }

  /** What the last draw() put on the canvas, in its CSS pixels: {size, panels: [{title, box}],
   * series: {name: {color, points: [[x, y], ...]}}} (extra series are named "extra:<field>"). */
  drawn() {
    const d = this.lastDrawn;
    if (!d) return null;
    const series = {};
    for (const [name, s] of Object.entries(d.series)) series[name] = { color: s.color, points: s.points.map((p) => [...p]) };
    return { size: [...d.size], panels: d.panels.map((p) => ({ ...p })), series };
  }

  addSmc(detail) {
    const step = Number(detail.step);
    if (this.promptId !== (detail.prompt_id ?? null) || this.smc.some((p) => p.step >= step)) {
      this.reset(detail.prompt_id ?? null);
    }
    const k = Number(detail.num_particles) || 1;
    this.smc.push({
      step, total: Number(detail.total) || step, k,
      ess: finite(detail.ess), essBefore: finite(detail.ess_before), resampled: Boolean(detail.resampled),
      mean: finite(detail.reward_mean), max: finite(detail.reward_max), extra: extraValues(detail, NOT_EXTRA.smc),
    });
    const last = this.smc[this.smc.length - 1];
    this.extra.smc.add(last.extra);
    this.status.textContent = `SMC ${last.step}/${last.total} · ESS ${fmt(last.ess)}/${k}` +
      `${last.resampled ? " · resampled" : ""} · r̂ mean ${fmt(last.mean)} max ${fmt(last.max)}`;
    this.scheduleDraw();
  }

  addMcmc(detail) {
    const iteration = Number(detail.iteration);
    if (this.promptId !== (detail.prompt_id ?? null) || this.mcmc.some((p) => p.iteration >= iteration)) {
      this.reset(detail.prompt_id ?? null);
    }
    this.mcmc.push({
      iteration, total: Number(detail.total) || iteration, burnIn: Boolean(detail.burn_in),
      acceptance: finite(detail.acceptance), mean: finite(detail.reward_mean), max: finite(detail.reward_max),
      extra: extraValues(detail, NOT_EXTRA.mcmc),
    });
    const last = this.mcmc[this.mcmc.length - 1];
    this.extra.mcmc.add(last.extra);
    this.status.textContent = `MCMC ${last.iteration}/${last.total} · accept ${fmt(last.acceptance, 2)}` +
      ` · r̂ mean ${fmt(last.mean)} max ${fmt(last.max)}`;
    this.scheduleDraw();
  }

  scheduleDraw() {
    if (this.pending) return;
    this.pending = requestAnimationFrame(() => {
      this.pending = null;
      this.draw();
    });
  }

  draw() {
    if (this.removed) return;
    const width = this.plot.clientWidth || this.element.clientWidth || 300;
    const height = Math.max(90, this.plot.clientHeight || HEIGHT - STATUS_H - 6);
    const ctx = sizedContext(this.canvas, width, height);
    ctx.clearRect(0, 0, width, height);
    ctx.fillStyle = COLORS.background;
    ctx.fillRect(0, 0, width, height);
    this.lastDrawn = { size: [width, height], panels: [], series: {} };
    const useSmc = this.smc.length > 0 || this.mcmc.length === 0;
    const points = useSmc ? this.smc : this.mcmc;
    const x = useSmc ? (p) => p.step : (p) => p.iteration;
    let total = points.length ? points[points.length - 1].total : 1;
    for (const p of points) total = Math.max(total, x(p));
    const third = Math.floor(height / 3);
    const box = (i) => ({ left: 34, top: i * third + 13, right: width - 6, bottom: (i + 1) * third - 4 });
    const [top, middle, bottom] = [box(0), box(1), box(2)];
    if (useSmc) {
      const k = points.length ? points[points.length - 1].k : 1;
      this.panel(ctx, top, `ESS / K (K = ${k}), before resampling (faint)`, [0, 1], total);
      for (const p of points) if (p.resampled) this.mark(ctx, top, total, x(p), COLORS.resample);
      this.line(ctx, top, [0, 1], total, points.map((p) => [x(p), p.essBefore == null ? null : p.essBefore / p.k]),
                COLORS.essBefore, "essBefore");
      this.line(ctx, top, [0, 1], total, points.map((p) => [x(p), p.ess == null ? null : p.ess / p.k]), COLORS.ess,
                "ess");
    } else {
      this.panel(ctx, top, "MCMC acceptance", [0, 1], total);
      let burnIn = null;
      for (const p of points) if (p.burnIn) burnIn = Math.max(burnIn ?? x(p), x(p));
      if (burnIn !== null) this.shade(ctx, top, total, burnIn);
      this.line(ctx, top, [0, 1], total, points.map((p) => [x(p), p.acceptance]), COLORS.ess, "acceptance");
    }
    let range = [Infinity, -Infinity];
    for (const p of points) {
      for (const v of [p.mean, p.max]) {
        if (v == null) continue;
        range = [Math.min(range[0], v), Math.max(range[1], v)];
      }
    }
    if (!(range[0] <= range[1])) range = [0, 1];
    if (range[1] - range[0] < 1e-9) range = [range[0] - 0.5, range[1] + 0.5];
    this.panel(ctx, middle, "reward r̂: mean (blue), max (green)", range, total);
    this.line(ctx, middle, range, total, points.map((p) => [x(p), p.max]), COLORS.max, "max");
    this.line(ctx, middle, range, total, points.map((p) => [x(p), p.mean]), COLORS.mean, "mean");
    this.extraPanel(ctx, bottom, useSmc ? this.extra.smc : this.extra.mcmc, points, x, total);
  }

  /** The extra per-step series, each scaled to its own [min, max], named with its latest value. */
  extraPanel(ctx, box, extra, points, x, total) {
    const names = extra.names();
    this.panel(ctx, box, names.length ? "" : "other per-step values: none in these events", [0, 1], total, false);
    const last = points.length ? points[points.length - 1].extra : {};
    let left = box.left + 2;
    names.forEach((name, i) => {
      const color = EXTRA_COLORS[i % EXTRA_COLORS.length];
      const [lo, hi] = extra.ranges.get(name);
      const range = hi - lo < 1e-12 ? [lo - 0.5, hi + 0.5] : [lo, hi];
      this.line(ctx, box, range, total, points.map((p) => [x(p), p.extra[name] ?? null]), color, `extra:${name}`);
      const label = `${name} ${fmt(last[name])}${hi > lo ? ` (${fmt(lo)}–${fmt(hi)})` : ""}`;
      ctx.fillStyle = color;
      ctx.textAlign = "left";
      ctx.textBaseline = "bottom";
      if (left < box.right) ctx.fillText(label, left, box.top - 2);
      left += ctx.measureText(label).width + 10;
    });
  }

  px(box, range, total, xValue, yValue) {
    const xs = box.left + (xValue / Math.max(total, 1)) * (box.right - box.left);
    const ys = box.bottom - ((yValue - range[0]) / (range[1] - range[0])) * (box.bottom - box.top);
    return [xs, ys];
  }

  panel(ctx, box, title, range, total, axis = true) {
    this.lastDrawn.panels.push({ title, box: { ...box } });
    ctx.strokeStyle = COLORS.frame;
    ctx.lineWidth = 1;
    ctx.strokeRect(box.left + 0.5, box.top + 0.5, box.right - box.left, box.bottom - box.top);
    ctx.fillStyle = COLORS.text;
    ctx.font = "10px sans-serif";
    ctx.textBaseline = "bottom";
    ctx.textAlign = "left";
    ctx.fillText(title, box.left + 2, box.top - 2);
    ctx.textAlign = "right";
    ctx.fillText(`${total}`, box.right, box.top - 2);
    ctx.textBaseline = "middle";
    if (!axis) return;
    for (const value of range) {
      const [, y] = this.px(box, range, total, 0, value);
      ctx.fillText(fmt(value), box.left - 3, y);
    }
  }

  line(ctx, box, range, total, pairs, color, name) {
    const drawn = [];
    ctx.strokeStyle = color;
    ctx.fillStyle = color;
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    let open = false;
    for (const [xValue, yValue] of pairs) {
      if (yValue == null) {
        open = false;
        continue;
      }
      const [xs, ys] = this.px(box, range, total, xValue, yValue);
      if (open) ctx.lineTo(xs, ys);
      else ctx.moveTo(xs, ys);
      open = true;
    }
    ctx.stroke();
    for (const [xValue, yValue] of pairs) {
      if (yValue == null) continue;
      const [xs, ys] = this.px(box, range, total, xValue, yValue);
      ctx.fillRect(xs - 1.5, ys - 1.5, 3, 3);
      drawn.push([xs, ys]);
    }
    this.lastDrawn.series[name] = { color, points: drawn };
  }

  mark(ctx, box, total, xValue, color) {
    const [xs] = this.px(box, [0, 1], total, xValue, 0);
    ctx.strokeStyle = color;
    ctx.setLineDash([3, 3]);
    ctx.beginPath();
    ctx.moveTo(xs, box.top);
    ctx.lineTo(xs, box.bottom);
    ctx.stroke();
    ctx.setLineDash([]);
  }

  shade(ctx, box, total, until) {
    const [xs] = this.px(box, [0, 1], total, until, 0);
    ctx.fillStyle = COLORS.burnIn;
    ctx.fillRect(box.left, box.top, xs - box.left, box.bottom - box.top);
  }

  destroy() {
    this.removed = true;
    if (this.pending) cancelAnimationFrame(this.pending);
    this.resizeObserver.disconnect();
  }
}

function linkOrigin(graph, linkId) {
  const link = graph.getLink?.(linkId) ?? graph.links?.get?.(linkId) ?? graph.links?.[linkId];
  return link?.origin_id;
}

/** The charts an event from executing node `nodeId` belongs to. */
function chartsFor(nodeId) {
  if (nodeId == null) return [];
  const direct = charts.get(nodeId);
  if (direct) return [direct];
  const graph = app.graph;
  const node = graph?.getNodeById?.(nodeId) ?? graph?.getNodeById?.(Number(nodeId));
  if (!node?.inputs) return [];
  const found = [];
  for (const input of node.inputs) {
    if (input.link == null) continue;
    const chart = charts.get(linkOrigin(graph, input.link));
    if (chart && chart.node.comfyClass === "PsiSMCSamplerCustom") found.push(chart);
  }
  return found;
}

function onEvent(kind) {
  return (event) => {
    const detail = event.detail ?? {};
    for (const chart of chartsFor(detail.node)) {
      if (kind === "smc") chart.addSmc(detail);
      else chart.addMcmc(detail);
    }
  };
}

function onExecutionStart(event) {
  const promptId = event.detail?.prompt_id ?? null;
  for (const chart of charts.values()) chart.reset(promptId);
}

const extension = {
  name: EXTENSION,

  /** Points received by the chart of node `nodeId` since its last reset, or null (no chart). */
  chartData(nodeId) {
    return charts.get(nodeId)?.data() ?? null;
  },

  /** What the chart of node `nodeId` drew last (see LiveChart.drawn), or null. */
  chartDrawn(nodeId) {
    return charts.get(nodeId)?.drawn() ?? null;
  },

  setup() {
    api.addEventListener("psi.smc_step", onEvent("smc"));
    api.addEventListener("psi.mcmc_step", onEvent("mcmc"));
    api.addEventListener("execution_start", onExecutionStart);
  },

  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!CHART_NODES.has(nodeData?.name)) return;
    chainCallback(nodeType.prototype, "onNodeCreated", function () {
      this.psiLiveChart = new LiveChart(this);
      charts.register(this);
    });
    charts.track(nodeType);
  },
};

app.registerExtension(extension);
