// The case's k-hop subgraph drawn in SVG, with no library.
//
// Layout: a radial tree. The query transaction sits in the centre, hop-1 entities on a ring
// (an ellipse filling the drawing) around it, grouped by type, and each further hop on the
// next ring out, inside the wedge of the node it hangs off. It is deterministic: the same
// case always looks the same.
//
// Interaction: hover or keyboard focus shows a node's id, type and label and lights up its
// neighbourhood; click (or Enter) pins that highlight; drag moves a node; the arrow keys walk
// the nodes while the drawing has focus, Esc unpins.

import { formatNumber, h, headRow, replace, svg } from "./dom.js";

const ENTITY_TYPES = ["transaction", "account", "card", "device", "ip", "merchant"];
const TYPE_ORDER = new Map(ENTITY_TYPES.map((t, i) => [t, i]));

const WIDTH = 640;
const HEIGHT = 460;
const MARGIN = 48; // room for labels outside the outer ring
const DRAG_THRESHOLD = 4; // px of pointer travel before a press becomes a drag

const TAU = 2 * Math.PI;
// Semi-axes of the outermost ring; inner rings scale down from it.
const RX = WIDTH / 2 - MARGIN;
const RY = HEIGHT / 2 - MARGIN;

function short(id, n = 14) {
  const s = String(id);
  return s.length > n ? `${s.slice(0, n - 1)}…` : s;
}

/** The angle of a point around the centre, on the ellipse through it. */
function angleOf(x, y) {
  return Math.atan2((y - HEIGHT / 2) / RY, (x - WIDTH / 2) / RX);
}

/**
 * Positions {x, y} by node index: a radial tree. A breadth-first tree from the query node
 * gives every node a depth (its ring) and a parent; each node gets a wedge of the circle
 * in proportion to the leaves below it, and sits in the middle of its wedge. Wedges never
 * overlap, so neither do nodes, and a hub's neighbours fan out over the room they need.
 */
function layout(nodes, adjacency, root) {
  const byIndex = new Map(nodes.map((n) => [n.index, n]));
  const order = (a, b) => {
    const p = byIndex.get(a);
    const q = byIndex.get(b);
    return (
      (TYPE_ORDER.get(p.type) ?? 99) - (TYPE_ORDER.get(q.type) ?? 99) ||
      String(p.id).localeCompare(String(q.id))
    );
  };
  const depth = new Map([[root, 0]]);
  const children = new Map(nodes.map((n) => [n.index, []]));
  const queue = [root];
  for (let i = 0; i < queue.length; i++) {
    const at = queue[i];
    for (const next of [...new Set(adjacency.get(at) ?? [])].sort(order)) {
      if (depth.has(next)) continue;
      depth.set(next, depth.get(at) + 1);
      children.get(at).push(next);
      queue.push(next);
    }
  }
  // Nodes with no path to the query (none expected) hang off it on the outermost ring.
  const deepest = Math.max(1, ...depth.values());
  for (const n of [...nodes].sort((a, b) => order(a.index, b.index))) {
    if (depth.has(n.index)) continue;
    depth.set(n.index, deepest);
    children.get(root).push(n.index);
  }
  const maxDepth = Math.max(1, ...depth.values());

  const leaves = new Map();
  const countLeaves = (i) => {
    const kids = children.get(i);
    const count = kids.length ? kids.reduce((sum, k) => sum + countLeaves(k), 0) : 1;
    leaves.set(i, count);
    return count;
  };
  countLeaves(root);

  // The innermost ring is short: each hop-1 node gets at least half an even share of it, so
  // a hub's wedge cannot squeeze its siblings into one spot.
  const floor = leaves.get(root) / (2 * Math.max(1, children.get(root).length));
  const pos = new Map([[root, { x: WIDTH / 2, y: HEIGHT / 2 }]]);
  const place = (i, from, to) => {
    const kids = children.get(i);
    const weights = kids.map((k) => (i === root ? Math.max(leaves.get(k), floor) : leaves.get(k)));
    const total = weights.reduce((sum, w) => sum + w, 0);
    let start = from;
    for (const [j, k] of kids.entries()) {
      const end = start + ((to - from) * weights[j]) / total;
      const angle = (start + end) / 2;
      const scale = depth.get(k) / maxDepth;
      pos.set(k, {
        x: WIDTH / 2 + scale * RX * Math.cos(angle),
        y: HEIGHT / 2 + scale * RY * Math.sin(angle),
      });
      place(k, start, end);
      start = end;
    }
  };
  place(root, -Math.PI / 2, -Math.PI / 2 + TAU); // from 12 o'clock, clockwise
  return pos;
}

function describe(node) {
  const parts = [`${node.type} ${node.id}`, `hop ${node.hop}`, `label ${node.label ?? "unknown"}`];
  if (typeof node.contribution === "number") {
    parts.push(`contribution ${node.contribution.toFixed(3)}`);
  }
  return parts.join(", ");
}

function legend() {
  return h(
    "ul",
    { class: "legend", "aria-label": "Legend" },
    ENTITY_TYPES.map((t) =>
      h("li", {}, h("span", { class: `swatch type-${t}`, "aria-hidden": "true" }), t),
    ),
    h("li", {}, h("span", { class: "swatch ring-fraud", "aria-hidden": "true" }), "fraud label"),
    h("li", {}, h("span", { class: "swatch ring-legit", "aria-hidden": "true" }), "legit label"),
    h("li", { class: "muted" }, "size = contribution"),
  );
}

/** The same subgraph as a table, for screen readers and for copying ids. */
function asTable(nodes) {
  return h(
    "details",
    { class: "graph-table" },
    h("summary", {}, `All ${nodes.length} nodes as a table`),
    h(
      "table",
      { class: "grid compact" },
      h("thead", {}, headRow("Type", "Id", "Hop", "Label", "Contribution")),
      h(
        "tbody",
        {},
        nodes.map((n) =>
          h(
            "tr",
            {},
            h("td", {}, n.type),
            h("td", { class: "mono" }, n.id),
            h("td", { class: "num" }, n.hop),
            h("td", {}, n.label ?? "unknown"),
            h("td", { class: "num" }, formatNumber(n.contribution, 3)),
          ),
        ),
      ),
    ),
  );
}

/** An edge's time (ISO text or POSIX seconds) as ISO text. */
function edgeTime(t) {
  if (typeof t === "number") return new Date(t * 1000).toISOString();
  return t ? String(t) : "";
}

/**
 * A figure with the drawing, its legend and a table alternative.
 *
 * `subgraph` = {nodes: [{index, type, id, hop, label, contribution}],
 *               edges: [{src, dst, relation, time, contribution}]}, `src`/`dst` being node
 * indices. Index 0 is the scored payment; the explanation lists only the nodes around it,
 * so when it is missing it is drawn from `transactionId`.
 */
export function renderSubgraph(subgraph, transactionId) {
  const nodes = [...(subgraph?.nodes ?? [])];
  const edges = (subgraph?.edges ?? []).filter((e) => e.src !== e.dst);
  if (!nodes.length) {
    return h("p", { class: "muted placeholder" }, "No subgraph was recorded for this case.");
  }
  if (!nodes.some((n) => n.index === 0)) {
    const id = transactionId ?? "this payment";
    nodes.unshift({ index: 0, type: "transaction", id, hop: 0, label: null, contribution: null });
  }
  const byIndex = new Map(nodes.map((n) => [n.index, n]));
  const adjacency = new Map();
  for (const e of edges) {
    if (!byIndex.has(e.src) || !byIndex.has(e.dst)) continue;
    for (const [a, b] of [
      [e.src, e.dst],
      [e.dst, e.src],
    ]) {
      if (!adjacency.has(a)) adjacency.set(a, []);
      adjacency.get(a).push(b);
    }
  }
  const pos = layout(nodes, adjacency, nodes.find((n) => n.hop === 0)?.index ?? 0);

  const maxNode = Math.max(1e-9, ...nodes.map((n) => Math.abs(n.contribution ?? 0)));
  const maxEdge = Math.max(1e-9, ...edges.map((e) => Math.abs(e.contribution ?? 0)));
  const radiusOf = (n) =>
    n.hop === 0 ? 13 : 6 + 7 * Math.sqrt(Math.abs(n.contribution ?? 0) / maxNode);

  // Edges first, so nodes draw over them.
  const edgeEls = edges
    .filter((e) => byIndex.has(e.src) && byIndex.has(e.dst))
    .map((e) => {
      const width = 1 + 3 * (Math.abs(e.contribution ?? 0) / maxEdge);
      const line = svg(
        "line",
        {
          class: `edge${typeof e.contribution === "number" ? " edge-weighted" : ""}`,
          "stroke-width": width.toFixed(2),
        },
        svg("title", {}, [e.relation ?? "edge", edgeTime(e.time)].filter(Boolean).join(" · ")),
      );
      return { e, line };
    });

  const nodeEls = new Map();
  for (const n of nodes) {
    const r = radiusOf(n);
    const label = n.label === "fraud" || n.label === "legit" ? n.label : "unknown";
    const g = svg(
      "g",
      {
        class: `node type-${ENTITY_TYPES.includes(n.type) ? n.type : "other"} label-${label}${
          n.hop === 0 ? " node-query" : ""
        }${n.hop >= 2 ? " node-outer" : ""}`,
        dataset: { index: n.index },
      },
      // A wider, invisible target makes small nodes easy to hit with the pointer.
      svg("circle", { class: "hit", r: Math.max(r + 4, 10) }),
      svg("circle", { class: "dot", r }),
      svg("text", { class: "node-label" }, short(n.id)),
    );
    nodeEls.set(n.index, g);
  }

  // Labels sit just outside their node, pointing away from the centre.
  const placeLabel = (g, n, p) => {
    const text = g.querySelector("text");
    const r = radiusOf(n) + 4;
    const a = Math.atan2(p.y - HEIGHT / 2, p.x - WIDTH / 2);
    const centred = n.hop === 0 || Math.hypot(p.x - WIDTH / 2, p.y - HEIGHT / 2) < 1;
    const dx = centred ? 0 : Math.cos(a);
    const dy = centred ? 1 : Math.sin(a);
    text.setAttribute("x", (dx * r).toFixed(1));
    // Text hangs from its baseline: nudge it down a little, and clear the node above/below.
    const below = Math.abs(dx) < 0.35 ? 4 * Math.sign(dy) : 0;
    text.setAttribute("y", (dy * r + 3.5 + below).toFixed(1));
    text.setAttribute("text-anchor", dx > 0.35 ? "start" : dx < -0.35 ? "end" : "middle");
  };

  const place = () => {
    for (const [index, g] of nodeEls) {
      const p = pos.get(index);
      g.setAttribute("transform", `translate(${p.x.toFixed(1)} ${p.y.toFixed(1)})`);
      placeLabel(g, byIndex.get(index), p);
    }
    for (const { e, line } of edgeEls) {
      const a = pos.get(e.src);
      const b = pos.get(e.dst);
      line.setAttribute("x1", a.x.toFixed(1));
      line.setAttribute("y1", a.y.toFixed(1));
      line.setAttribute("x2", b.x.toFixed(1));
      line.setAttribute("y2", b.y.toFixed(1));
    }
  };
  place();

  const canvas = svg(
    "svg",
    {
      class: "graph",
      viewBox: `0 0 ${WIDTH} ${HEIGHT}`,
      role: "application",
      tabindex: "0",
      "aria-roledescription": "graph",
      "aria-label":
        `Subgraph: ${nodes.length} nodes, ${edges.length} edges. ` +
        "Arrow keys move between nodes, Enter pins a node's neighbourhood, Esc unpins.",
    },
    svg("g", { class: "edges" }, edgeEls.map((x) => x.line)),
    svg("g", { class: "nodes" }, [...nodeEls.values()]),
  );
  const tip = h("div", { class: "graph-tip", role: "status", "aria-live": "polite", hidden: true });
  const figure = h(
    "figure",
    { class: "graph-figure" },
    h("div", { class: "graph-stage" }, canvas, tip),
    h("figcaption", {}, legend()),
    asTable(nodes),
  );

  // Highlight ---------------------------------------------------------------------------
  let pinned = null; // node index whose neighbourhood stays lit
  let active = null; // node under the pointer or keyboard cursor
  const light = (index) => {
    canvas.classList.toggle("has-focus", index !== null);
    const near = new Set(index === null ? [] : [index, ...(adjacency.get(index) ?? [])]);
    for (const [i, g] of nodeEls) {
      g.classList.toggle("lit", near.has(i));
      g.classList.toggle("pinned", i === pinned);
    }
    for (const { e, line } of edgeEls) {
      line.classList.toggle("lit", index !== null && (e.src === index || e.dst === index));
    }
  };
  const showTip = (index) => {
    const n = byIndex.get(index);
    const p = pos.get(index);
    if (!n || !p) return;
    const label = n.label ?? "unknown";
    replace(
      tip,
      h("strong", { class: "mono" }, n.id),
      h("span", {}, `${n.type} · hop ${n.hop}`),
      h("span", { class: `tip-label label-${label}` }, `label: ${label}`),
      typeof n.contribution === "number"
        ? h("span", {}, `contribution ${n.contribution.toFixed(3)}`)
        : null,
    );
    tip.hidden = false;
    // Place the tip next to the node, in the stage's pixel space.
    const box = canvas.getBoundingClientRect();
    const sx = box.width / WIDTH;
    const sy = box.height / HEIGHT;
    const scale = Math.min(sx, sy);
    const ox = (box.width - WIDTH * scale) / 2;
    const oy = (box.height - HEIGHT * scale) / 2;
    const left = ox + p.x * scale + 14;
    tip.style.left = `${Math.min(left, box.width - 200)}px`;
    tip.style.top = `${Math.max(0, oy + p.y * scale - 12)}px`;
  };
  const setActive = (index) => {
    active = index;
    for (const [i, g] of nodeEls) g.classList.toggle("active", i === index);
    if (index === null) {
      tip.hidden = true;
      light(pinned);
    } else {
      showTip(index);
      light(pinned ?? index);
    }
  };
  const togglePin = (index) => {
    pinned = pinned === index ? null : index;
    light(pinned ?? active);
  };

  // Pointer: hover, click to pin, drag to move ------------------------------------------
  let drag = null;
  const toSvg = (ev) => {
    const m = canvas.getScreenCTM();
    if (!m) return { x: 0, y: 0 };
    const pt = new DOMPoint(ev.clientX, ev.clientY).matrixTransform(m.inverse());
    return { x: Math.min(WIDTH, Math.max(0, pt.x)), y: Math.min(HEIGHT, Math.max(0, pt.y)) };
  };
  const nodeIndexOf = (target) => {
    const g = target instanceof Element ? target.closest("g.node") : null;
    return g ? Number(g.dataset.index) : null;
  };
  canvas.addEventListener("pointerover", (ev) => {
    const i = nodeIndexOf(ev.target);
    if (i !== null && !drag) setActive(i);
  });
  canvas.addEventListener("pointerout", (ev) => {
    const i = nodeIndexOf(ev.target);
    if (i !== null && !drag && nodeIndexOf(ev.relatedTarget) !== i) setActive(null);
  });
  canvas.addEventListener("pointerdown", (ev) => {
    const i = nodeIndexOf(ev.target);
    if (i === null || ev.button !== 0) return;
    canvas.setPointerCapture(ev.pointerId);
    drag = { index: i, x0: ev.clientX, y0: ev.clientY, moved: false };
  });
  canvas.addEventListener("pointermove", (ev) => {
    if (!drag) return;
    if (!drag.moved && Math.hypot(ev.clientX - drag.x0, ev.clientY - drag.y0) < DRAG_THRESHOLD) {
      return;
    }
    drag.moved = true;
    canvas.classList.add("dragging");
    pos.set(drag.index, toSvg(ev));
    place();
    showTip(drag.index);
  });
  canvas.addEventListener("pointerup", (ev) => {
    if (drag && !drag.moved) togglePin(drag.index);
    else if (!drag && nodeIndexOf(ev.target) === null && pinned !== null) togglePin(pinned);
    drag = null;
    canvas.classList.remove("dragging");
  });
  canvas.addEventListener("pointercancel", () => {
    drag = null;
    canvas.classList.remove("dragging");
  });

  // Keyboard: arrows walk the nodes (centre outwards), Enter/Space pin, Esc unpin. -------
  const order = [...nodes]
    .sort((p, q) => {
      const a = pos.get(p.index);
      const b = pos.get(q.index);
      return p.hop - q.hop || angleOf(a.x, a.y) - angleOf(b.x, b.y);
    })
    .map((n) => n.index);
  canvas.addEventListener("focus", () => setActive(active ?? order[0]));
  canvas.addEventListener("blur", () => setActive(null));
  canvas.addEventListener("keydown", (ev) => {
    const at = Math.max(0, order.indexOf(active));
    let handled = true;
    if (ev.key === "ArrowRight" || ev.key === "ArrowDown") {
      setActive(order[(at + 1) % order.length]);
    } else if (ev.key === "ArrowLeft" || ev.key === "ArrowUp") {
      setActive(order[(at - 1 + order.length) % order.length]);
    } else if (ev.key === "Home") setActive(order[0]);
    else if (ev.key === "Enter" || ev.key === " ") togglePin(order[at]);
    else if (ev.key === "Escape" && pinned !== null) togglePin(pinned);
    else handled = false;
    // Handled keys are consumed here so the page's own shortcuts (Esc = back) do not fire.
    if (handled) ev.preventDefault();
  });

  return figure;
}
