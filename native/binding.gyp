{
  # Built by scripts/build-native.mjs (node-gyp rebuild, cwd native/). Links no llama.cpp: every llama_* / ggml_*
  # function is resolved at run time from the library node-llama-cpp loaded (src/llama_functions.cpp), so one
  # build serves its CPU, CUDA, Vulkan and Metal binaries. Headers come from node-llama-cpp's own addon sources
  # and its bundled llama.cpp source (the same tag as its binaries, so struct layouts match).
  "variables": {
    "nlc_dir%": "<!(node -p \"require('path').resolve(require.resolve('node-llama-cpp'), '..', '..')\")",
    # 1 (scripts/build-native.mjs --debug): the debug target, with diagnostics the product leaves out (src/stack_dump.cpp)
    "weft_debug%": "0"
  },
  "targets": [
    {
      "target_name": "weft_native",
      "sources": [
        "src/addon.cpp",
        "src/llama_functions.cpp",
        "src/addon_handles.cpp",
        "src/sequence_state.cpp",
        "src/pinned_buffer.cpp",
        "src/rope.cpp",
        "src/kv_splice.cpp",
        "src/kv_splice_plan.cpp",
        "src/kv_splice_coded.cpp",
        "src/kv_deviation.cpp",
        "src/kv_cells.cpp",
        "src/kv_resident.cpp",
        "src/kv_copy_graph.cpp",
        "src/capture_graph.cpp",
        "src/layer_capture.cpp",
        "src/kv_codec_tables.cpp",
        "src/kv_codec_encode.cpp",
        "src/kv_codec_decode.cpp",
        "src/kv_codec_format.cpp",
        "src/kv_codec_output.cpp",
        "src/kv_codec_addon.cpp",
        "src/fused_blend.cpp",
        "src/decode_settings.cpp"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "<(nlc_dir)/llama/addon",
        "<(nlc_dir)/llama/llama.cpp/include",
        "<(nlc_dir)/llama/llama.cpp/ggml/include"
      ],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-fvisibility=hidden"],
      "xcode_settings": {
        "GCC_ENABLE_CPP_EXCEPTIONS": "YES",
        "CLANG_CXX_LANGUAGE_STANDARD": "c++17",
        "CLANG_CXX_LIBRARY": "libc++",
        "MACOSX_DEPLOYMENT_TARGET": "11.0"
      },
      "msvs_settings": {
        "VCCLCompilerTool": {"ExceptionHandling": 1, "AdditionalOptions": ["/std:c++17"]}
      },
      "conditions": [
        ["OS=='linux'", {"libraries": ["-ldl"]}],
        ["weft_debug==1", {"sources": ["src/stack_dump.cpp"], "defines": ["WEFT_DEBUG_DIAGNOSTICS"]}],
        ["OS=='win'", {"defines": ["PSAPI_VERSION=2", "NOMINMAX", "WIN32_LEAN_AND_MEAN"]}]
      ]
    }
  ]
}
