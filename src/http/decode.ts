/**
 * Request bodies: JSON by Content-Type (415 otherwise), read under a byte limit (413 beyond it),
 * parse as JSON (400 naming the problem), and decode with the route's Effect Schema, reporting
 * the first broken rule with the field's path (`tasks[2].priority`) — the same `{field, rule}`
 * vocabulary the library's ValidationError uses.
 */
import type { IncomingMessage } from "node:http"
import { Either, Option, SchemaAST as AST, Schema, type ParseResult } from "effect"
import type { ValidationIssue } from "../domain/validation.js"
import { HttpError, badRequest } from "./errors.js"

/** Annotation naming the rule a refinement enforces (`range`, `integer`, `pattern`, …). */
export const RuleId: unique symbol = Symbol.for("codeq/http/rule")

/** Annotation with the text that completes "X must be …" (kept when a field's description is set). */
const RuleText: unique symbol = Symbol.for("codeq/http/rule-text")

/** Annotations for a refinement: its rule name and a description that completes "X must be …". */
export const rule = (name: string, description: string) => ({ [RuleId]: name, [RuleText]: description, description })

const fieldOf = (path: ReadonlyArray<PropertyKey>): string =>
  path.reduce<string>((out, key) => (typeof key === "number" ? `${out}[${key}]` : out === "" ? String(key) : `${out}.${String(key)}`), "")

const describe = (ast: AST.AST): string => {
  const ruleText = ast.annotations[RuleText]
  if (typeof ruleText === "string") return ruleText
  if (AST.isUnion(ast)) return ast.types.filter((member) => !AST.isUndefinedKeyword(member)).map(describe).join(" | ")
  if (AST.isLiteral(ast)) return JSON.stringify(ast.literal)
  if (AST.isTypeLiteral(ast)) return "a JSON object"
  if (AST.isTupleType(ast)) return "an array"
  return Option.getOrElse(AST.getDescriptionAnnotation(ast), () => {
    const text = String(ast)
    return text === "number" || text === "string" || text === "boolean" ? `a ${text}` : text
  })
}

/** The first leaf issue, depth first, with the path that leads to it. */
const firstIssue = (issue: ParseResult.ParseIssue, path: ReadonlyArray<PropertyKey>): ValidationIssue => {
  const field = fieldOf(path)
  const name = field === "" ? "the request body" : field
  switch (issue._tag) {
    case "Pointer":
      return firstIssue(issue.issue, [...path, ...(Array.isArray(issue.path) ? issue.path : [issue.path as PropertyKey])])
    case "Composite": {
      const issues = Array.isArray(issue.issues) ? issue.issues : [issue.issues as ParseResult.ParseIssue]
      const [first] = issues
      // A value matching no member of a union (e.g. a literal enum) is one type error, not N.
      if (AST.isUnion(issue.ast) && issues.every((i) => i._tag === "Type"))
        return { field: field || "body", rule: "type", message: `${name} must be ${describe(issue.ast)}` }
      return first === undefined ? { field: field || "body", rule: "invalid", message: `${name} is invalid` } : firstIssue(first, path)
    }
    case "Refinement": {
      if (issue.kind === "From") return firstIssue(issue.issue, path)
      const ruleName = issue.ast.annotations[RuleId]
      return { field: field || "body", rule: typeof ruleName === "string" ? ruleName : "invalid", message: `${name} must be ${describe(issue.ast)}` }
    }
    case "Transformation":
      return firstIssue(issue.issue, path)
    case "Missing":
      return { field, rule: "required", message: `${name} is required` }
    case "Unexpected": {
      // An empty key names no field: report the object it is in.
      if (path[path.length - 1] === "") {
        const parent = fieldOf(path.slice(0, -1))
        return { field: parent || "body", rule: "unknown", message: `unknown field "" (an empty key) in ${parent || "the request body"}` }
      }
      return { field, rule: "unknown", message: `unknown field ${field}` }
    }
    case "Type":
      if (field === "") return { field: "body", rule: "type", message: "the request body must be a JSON object" }
      return { field, rule: "type", message: `${name} must be ${describe(issue.ast)}` }
    case "Forbidden":
      return { field: field || "body", rule: "invalid", message: `${name} is invalid` }
  }
}

/**
 * Decodes `input` with `schema`, or names the first broken rule; `path` is where `input` sits in
 * the request (`["tasks", 2]` reports `tasks[2].priority`). Unknown fields are errors.
 */
export const decodeEither = <A, I>(schema: Schema.Schema<A, I>, input: unknown, path: ReadonlyArray<PropertyKey> = []): Either.Either<A, ValidationIssue> => {
  const result = Schema.decodeUnknownEither(schema, { onExcessProperty: "error", errors: "first" })(input)
  return Either.isRight(result) ? Either.right(result.right) : Either.left(firstIssue(result.left.issue, path))
}

/** Decodes `input` with `schema`; throws a 400 naming the first broken rule. Unknown fields are errors. */
export const decodeWith = <A, I>(schema: Schema.Schema<A, I>, input: unknown): A => {
  const result = decodeEither(schema, input)
  if (Either.isRight(result)) return result.right
  throw badRequest(result.left)
}

/** Whether a request carries a body: a non-zero Content-Length, or a chunked one. */
const hasBody = (req: IncomingMessage): boolean =>
  req.headers["transfer-encoding"] !== undefined || Number(req.headers["content-length"] ?? 0) > 0

/**
 * Refuses a request body that does not say it is JSON with a 415 (rule `content_type`): the media
 * type must be `application/json`, and a charset, when given, UTF-8. A request without a body
 * passes (routes whose fields are all optional accept none). The refused body is drained.
 */
export const requireJsonContentType = (req: IncomingMessage): void => {
  if (!hasBody(req)) return
  const [mediaType = "", ...params] = (req.headers["content-type"] ?? "").split(";").map((part) => part.trim().toLowerCase())
  const charset = params.find((p) => p.startsWith("charset="))?.slice("charset=".length).replace(/^"|"$/g, "")
  if (mediaType === "application/json" && (charset === undefined || charset === "utf-8" || charset === "utf8")) return
  req.resume()
  const given = mediaType === "" ? "none" : `${mediaType.replace(/[^\w.+/-]/g, "").slice(0, 100)}${charset !== undefined ? `; charset=${charset.replace(/[^\w-]/g, "").slice(0, 40)}` : ""}`
  throw new HttpError({
    status: 415,
    body: { error: `the request body must be JSON: Content-Type application/json (charset utf-8 if any), not ${given}`, field: "Content-Type", rule: "content_type" }
  })
}

/**
 * Reads the whole body, refusing more than `limit` bytes with a 413 (by Content-Length up front,
 * or as the bytes arrive). The rest of a refused body is drained, not buffered.
 */
export const readBody = (req: IncomingMessage, limit: number): Promise<Buffer> =>
  new Promise((resolve, reject) => {
    const tooLarge = () =>
      new HttpError({ status: 413, body: { error: `the request body exceeds the limit of ${limit} bytes`, field: "body", rule: "max_bytes" } })
    const declared = Number(req.headers["content-length"] ?? NaN)
    if (Number.isFinite(declared) && declared > limit) {
      req.resume()
      return reject(tooLarge())
    }
    const chunks: Array<Buffer> = []
    let size = 0
    let refused = false
    req.on("data", (chunk: Buffer) => {
      if (refused) return
      size += chunk.length
      if (size > limit) {
        refused = true
        chunks.length = 0
        reject(tooLarge())
        return
      }
      chunks.push(chunk)
    })
    req.on("end", () => {
      if (!refused) resolve(Buffer.concat(chunks))
    })
    req.on("error", (cause) => {
      if (!refused) reject(new HttpError({ status: 400, body: { error: "the request body could not be read" }, cause }))
    })
  })

/**
 * Strict UTF-8: JSON text must be UTF-8 (RFC 8259 §8.1). A lenient decode would turn invalid
 * bytes into U+FFFD and store something other than what the client sent, without telling it.
 * The BOM is kept, so a body starting with one is refused by JSON.parse as before.
 */
const UTF8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true })

/** Parses a body as JSON; an empty body is `{}` (every field optional routes accept it). */
export const parseJson = (body: Buffer): unknown => {
  let text: string
  try {
    text = UTF8.decode(body)
  } catch (cause) {
    throw new HttpError({ status: 400, body: { error: "the request body is not valid UTF-8", field: "body", rule: "utf8" }, cause })
  }
  if (text.trim() === "") return {}
  try {
    return JSON.parse(text) as unknown
  } catch (cause) {
    const detail = cause instanceof SyntaxError ? `: ${cause.message}` : ""
    throw new HttpError({ status: 400, body: { error: `the request body is not valid JSON${detail}`, field: "body", rule: "json" }, cause })
  }
}
