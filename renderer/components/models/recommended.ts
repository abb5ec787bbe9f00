/**
 * A short built-in list of GGUFs that run on an ordinary machine. Sizes are the files' approximate sizes, for
 * choosing; the download shows the real one. Llama 3.x models answer fine but never blend (see the README).
 */
export type Recommended = {name: string; source: string; approxBytes: number; kind: "chat" | "embedding"; note: string};

const MB = 1_000_000;

export const recommendedModels: Recommended[] = [
    {
        name: "Qwen2.5 0.5B Instruct (Q4_K_M)", kind: "chat", approxBytes: 400 * MB, note: "Smallest; quick on any CPU",
        source: "hf:Qwen/Qwen2.5-0.5B-Instruct-GGUF/qwen2.5-0.5b-instruct-q4_k_m.gguf"
    },
    {
        name: "Qwen2.5 3B Instruct (Q4_K_M)", kind: "chat", approxBytes: 2_000 * MB, note: "Better answers; a recent CPU or any GPU",
        source: "hf:Qwen/Qwen2.5-3B-Instruct-GGUF/qwen2.5-3b-instruct-q4_k_m.gguf"
    },
    {
        name: "Llama 3.2 1B Instruct (Q4_K_M)", kind: "chat", approxBytes: 810 * MB, note: "Answers well; cannot blend (full prefill)",
        source: "hf:bartowski/Llama-3.2-1B-Instruct-GGUF/Llama-3.2-1B-Instruct-Q4_K_M.gguf"
    },
    {
        name: "Mistral 7B Instruct v0.3 (Q4_K_M)", kind: "chat", approxBytes: 4_400 * MB, note: "Best of these; wants a GPU with 6 GB",
        source: "hf:bartowski/Mistral-7B-Instruct-v0.3-GGUF/Mistral-7B-Instruct-v0.3-Q4_K_M.gguf"
    },
    {
        name: "nomic-embed-text v1.5 (Q8_0)", kind: "embedding", approxBytes: 146 * MB, note: "Embedding model for hybrid retrieval",
        source: "hf:nomic-ai/nomic-embed-text-v1.5-GGUF/nomic-embed-text-v1.5.Q8_0.gguf"
    }
];
