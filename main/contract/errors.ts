import {z} from "zod";

/** Every error that crosses the engine boundary (IPC, socket, CLI --json) has this shape. */
export const ErrorCode = z.enum([
    "bad_request",
    "unauthorized",
    "not_found",
    "model_missing",
    "model_invalid",
    "model_too_large",
    "no_model",
    "busy",
    "cancelled",
    "download_failed",
    "internal"
]);
export type ErrorCode = z.infer<typeof ErrorCode>;

export const EngineErrorShape = z.object({
    code: ErrorCode,
    message: z.string()
});
export type EngineErrorShape = z.infer<typeof EngineErrorShape>;

export class EngineError extends Error {
    public readonly code: ErrorCode;

    public constructor(code: ErrorCode, message: string, options?: {cause?: unknown}) {
        super(message, options);
        this.name = "EngineError";
        this.code = code;
    }

    public toShape(): EngineErrorShape {
        return {code: this.code, message: this.message};
    }

    public static fromShape(shape: EngineErrorShape): EngineError {
        return new EngineError(shape.code, shape.message);
    }
}

/** Turns anything thrown into the wire shape; unknown errors keep their message but get the `internal` code. */
export function toErrorShape(error: unknown): EngineErrorShape {
    if (error instanceof EngineError)
        return error.toShape();

    if (error instanceof z.ZodError)
        return {code: "bad_request", message: formatZodError(error)};

    if (error instanceof Error)
        return {code: "internal", message: error.message};

    return {code: "internal", message: String(error)};
}

export function formatZodError(error: z.ZodError): string {
    return error.issues
        .map((issue) => (issue.path.length > 0 ? `${issue.path.join(".")}: ${issue.message}` : issue.message))
        .join("; ");
}
