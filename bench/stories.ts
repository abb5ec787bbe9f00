// The benchmarks' short stories for stories260K (quality and codec).

// Eight short TinyStories-like paragraphs, 45 to 75 tokens each with this model's 512-token vocabulary.
export const stories = [
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her red ball. One day the ball rolled into the pond.",
    "Tom was a big brown dog. He liked to run and jump in the garden. One day Tom found a shiny stick under a tall tree and took it to his friend.",
    "The sun was hot, so Mom made cold lemonade. Lily and Tom sat in the shade and drank it all up. Then they felt happy and cool.",
    "Ben had a small blue boat. He took it to the lake with his dad. The wind was strong and the boat went fast. Ben laughed and clapped his hands.",
    "Sue was sad because her cat was lost. She looked under the bed and in the box. At last she found the cat asleep in the warm sun by the door.",
    "A little bird lived in a big tree. Every morning the bird sang a happy song. The other animals came to listen, and they all danced together.",
    "Max wanted a cookie, but the jar was too high. He asked his sister Amy for help. Amy gave him a cookie and they shared it at the table.",
    "It was a rainy day. Anna put on her yellow boots and jumped in the puddles. Her mom smiled and said they could bake a cake when she came home."
];
