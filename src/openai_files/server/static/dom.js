/* Finding and making the page's elements. */

export const $ = (id) => document.getElementById(id);

/** A new element: `el("td", {className: "x", dataset: {label: "Name"}}, "text", child)`. */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (name === "dataset") Object.assign(node.dataset, value);
    else if (name === "role") node.setAttribute("role", value);
    else if (name.startsWith("aria")) node.setAttribute("aria-" + name.slice(4).toLowerCase(), value);
    else node[name] = value;
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}
