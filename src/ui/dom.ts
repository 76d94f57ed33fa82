/// <reference lib="dom" />
/**
 * The page's only way to make DOM: elements from a tag, attributes and children, where every
 * string becomes a text node. Nothing here parses markup (no innerHTML, no insertAdjacentHTML), so
 * a task's data — a nack reason, a command, a worker id — is shown as the characters it is.
 * Attributes are set by name; event-handler attributes are refused, and an `href` must be http(s).
 */

export type Child = Node | string | number | null | undefined | false

export type Attrs = Readonly<Record<string, string | number | boolean | undefined>>

const SAFE_SCHEMES = new Set(["http:", "https:"])

/** An element with attributes and children; strings and numbers become text. */
export const h = <K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Attrs = {}, ...children: ReadonlyArray<Child>): HTMLElementTagNameMap[K] => {
  const element = document.createElement(tag)
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === false) continue
    if (/^on/i.test(name)) throw new Error(`event handler attributes are not allowed: ${name}`)
    if (name === "href" && !SAFE_SCHEMES.has(new URL(String(value), document.baseURI).protocol)) throw new Error("only http(s) links are allowed")
    element.setAttribute(name, value === true ? "" : String(value))
  }
  append(element, ...children)
  return element
}

/** Appends children, strings as text nodes. */
export const append = (parent: Node, ...children: ReadonlyArray<Child>): void => {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue
    parent.appendChild(typeof child === "string" || typeof child === "number" ? document.createTextNode(String(child)) : child)
  }
}

/** Replaces an element's children. */
export const show = (parent: Element, ...children: ReadonlyArray<Child>): void => {
  parent.replaceChildren()
  append(parent, ...children)
}

/** The element with this id, of this type; the shell (src/http/uiPage.ts) must have it. */
export const byId = <T extends HTMLElement>(id: string, type: { new (): T; prototype: T }): T => {
  const element = document.getElementById(id)
  if (!(element instanceof type)) throw new Error(`the page has no ${type.name} #${id}`)
  return element
}

/** A table with a caption, column headers and rows; `numeric` columns align right. */
export const table = (caption: string, columns: ReadonlyArray<{ readonly label: string; readonly numeric?: boolean }>, rows: ReadonlyArray<HTMLTableRowElement>): HTMLTableElement =>
  h(
    "table",
    {},
    h("caption", {}, caption),
    h("thead", {}, h("tr", {}, ...columns.map((c) => h("th", { scope: "col", class: c.numeric === true ? "num" : undefined }, c.label)))),
    h("tbody", {}, ...rows)
  )
