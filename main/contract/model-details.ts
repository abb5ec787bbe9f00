import {z} from "zod";

/** What the Models view shows beyond ModelInfo, read from each file's GGUF metadata. */
export const ModelDetails = z.object({
    id: z.string(),
    /** "Q4_K_M", "F16", …; null when the file does not say (or cannot be read). */
    quantization: z.string().nullable()
});
export type ModelDetails = z.infer<typeof ModelDetails>;

export const modelDetailsEndpoints = {
    listModelDetails: {input: z.object({}), output: z.array(ModelDetails)}
} as const;
