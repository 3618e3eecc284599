// Live chart on the Ψ sampler nodes: ESS and reward per SMC step (psi.smc_step events), MCMC
// acceptance and reward per iteration (psi.mcmc_step), drawn while the node runs and cleared when a
// new run starts (execution_start, or a step number that goes back).
//
// Events name the executing node. PsiSMCSamplerCustom runs inside SamplerCustomAdvanced, so events
// from a SamplerCustomAdvanced node go to the PsiSMCSamplerCustom linked to its inputs.
//
// For tests and other extensions: app.extensions entry "psi.live_chart" has chartData(nodeId).

import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { NodeRegistry, chainCallback, el, fmt, sizedContext } from "./psi_common.js";

const EXTENSION = "psi.live_chart";
const CHART_NODES = new Set(["PsiInitialSampler", "PsiSMCSampler", "PsiSMCSamplerCustom"]);
const WIDGET = "psi_live_chart";
const HEIGHT = 170;
const STATUS_H = 16;
const COLORS = {
  background: "rgba(0, 0, 0, 0.28)",
  frame: "#666",
  grid: "rgba(255, 255, 255, 0.08)",
  text: "#bbb",
  ess: "#4aa3ff",
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

class LiveChart {
  constructor(node) {
    this.node = node;
    this.canvas = el("canvas", { className: "psi-live-chart-canvas", style: { display: "block", width: "100%" } });
    this.status = el("div", {
      className: "psi-live-chart-status",
      style: { font: "11px sans-serif", color: COLORS.text, whiteSpace: "nowrap", overflow: "hidden",
               textOverflow: "ellipsis", padding: "0 4px", height: `${STATUS_H}px`, lineHeight: `${STATUS_H}px`,
               flex: `0 0 ${STATUS_H}px` },
    });
    this.element = el("div", {
      className: "psi-live-chart",
      style: { display: "flex", flexDirection: "column", boxSizing: "border-box", padding: "2px 0" },
    }, this.canvas, this.status);
    this.reset(null);
    this.widget = node.addDOMWidget(WIDGET, "psi-live-chart", this.element, {
      serialize: false,
      hideOnZoom: false,
      getMinHeight: () => HEIGHT,
      getMaxHeight: () => HEIGHT * 2,
    });
    this.widget.serialize = false;
    this.resizeObserver = new ResizeObserver(() => this.draw());
    this.resizeObserver.observe(this.element);
  }

  reset(promptId) {
    this.promptId = promptId;
    this.smc = [];
    this.mcmc = [];
    this.status.textContent = "Ψ live chart: waiting for a run";
    this.scheduleDraw();
  }

  /** Data for tests and tools: copies of the points received since the last reset. */
  data() {
    return { promptId: this.promptId, smc: this.smc.map((p) => ({ ...p })), mcmc: this.mcmc.map((p) => ({ ...p })) };
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
      mean: finite(detail.reward_mean), max: finite(detail.reward_max),
    });
    const last = this.smc[this.smc.length - 1];
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
    });
    const last = this.mcmc[this.mcmc.length - 1];
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
    const width = this.element.clientWidth || 300;
    const height = Math.max(60, (this.element.clientHeight || HEIGHT) - STATUS_H - 6);
    const ctx = sizedContext(this.canvas, width, height);
    ctx.clearRect(0, 0, width, height);
    ctx.fillStyle = COLORS.background;
    ctx.fillRect(0, 0, width, height);
    const useSmc = this.smc.length > 0 || this.mcmc.length === 0;
    const points = useSmc ? this.smc : this.mcmc;
    const x = useSmc ? (p) => p.step : (p) => p.iteration;
    const total = points.length ? Math.max(points[points.length - 1].total, ...points.map(x)) : 1;
    const half = Math.floor(height / 2);
    const top = { left: 34, top: 14, right: width - 6, bottom: half - 4 };
    const bottom = { left: 34, top: half + 12, right: width - 6, bottom: height - 4 };
    if (useSmc) {
      const k = points.length ? points[points.length - 1].k : 1;
      this.panel(ctx, top, `ESS / K (K = ${k})`, [0, 1], total);
      this.line(ctx, top, [0, 1], total, points.map((p) => [x(p), p.ess == null ? null : p.ess / p.k]), COLORS.ess);
      for (const p of points.filter((q) => q.resampled)) this.mark(ctx, top, total, x(p), COLORS.resample);
    } else {
      this.panel(ctx, top, "MCMC acceptance", [0, 1], total);
      const burn = points.filter((p) => p.burnIn).map(x);
      if (burn.length) this.shade(ctx, top, total, Math.max(...burn));
      this.line(ctx, top, [0, 1], total, points.map((p) => [x(p), p.acceptance]), COLORS.ess);
    }
    const rewards = points.flatMap((p) => [p.mean, p.max]).filter((v) => v != null);
    let range = rewards.length ? [Math.min(...rewards), Math.max(...rewards)] : [0, 1];
    if (range[1] - range[0] < 1e-9) range = [range[0] - 0.5, range[1] + 0.5];
    this.panel(ctx, bottom, "reward r̂: mean (blue), max (green)", range, total);
    this.line(ctx, bottom, range, total, points.map((p) => [x(p), p.max]), COLORS.max);
    this.line(ctx, bottom, range, total, points.map((p) => [x(p), p.mean]), COLORS.mean);
  }

  px(box, range, total, xValue, yValue) {
    const xs = box.left + (xValue / Math.max(total, 1)) * (box.right - box.left);
    const ys = box.bottom - ((yValue - range[0]) / (range[1] - range[0])) * (box.bottom - box.top);
    return [xs, ys];
  }

  panel(ctx, box, title, range, total) {
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
    for (const value of range) {
      const [, y] = this.px(box, range, total, 0, value);
      ctx.fillText(fmt(value), box.left - 3, y);
    }
  }

  line(ctx, box, range, total, pairs, color) {
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
    }
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
