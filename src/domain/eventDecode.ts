/**
 * Decoding an event body against the schema of its type (the `Codeq-Event` header names it): half
 * the work of trying the union, and a body of another type fails the member's `type` literal. The
 * log's reader, the claim message and replay decode through here, with the compiled fast path of
 * `fastDecoder`.
 */
import type { Either, ParseResult, Schema } from "effect"
import { TaskCreated, TaskEvent, type EventOf } from "./events.js"
import { fastDecoder } from "./fastDecode.js"

type Decode<A> = (body: unknown) => Either.Either<A, ParseResult.ParseError>

const byType = new Map<string, Decode<TaskEvent>>(TaskEvent.members.map((member) => [member.fields.type.literals[0], fastDecoder(member as Schema.Schema<TaskEvent, unknown>)]))

/** The decoder of one event type's body, or undefined for a name that is not an event type. */
export const eventDecoderOf = (type: string): Decode<TaskEvent> | undefined => byType.get(type)

/** Any event body, tried against the whole union (an event whose type is not declared). */
export const decodeAnyEvent: Decode<TaskEvent> = fastDecoder(TaskEvent)

/** A TaskCreated body (the one a claim message carries). */
export const decodeCreated: Decode<EventOf<"TaskCreated">> = fastDecoder(TaskCreated)
