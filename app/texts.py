"""Every user-facing sentence of the UI, in one place."""

TITLE = "Lethe"
TAGLINE = "An interactive workbench for LLM unlearning: ECO, ELM and SKU side by side."
INTRO = (
    "Load a causal LM, type prompts, and watch what a model forgets and what it keeps. "
    "The embedded default, SmolLM2-135M-Instruct, runs offline on a laptop CPU."
)

MODEL_TAB = "Model"
MODEL_HELP = (
    "`default` is the embedded SmolLM2-135M-Instruct. Any Hugging Face id or local folder works too; "
    "several GPUs are used together automatically."
)
MODEL_NAME = "Model (default, Hub id or local folder)"
DEVICE = "Device"
DTYPE = "Precision"
TRUST_REMOTE_CODE = "Trust remote code (runs code from the model's repository)"
LOAD = "Load model"
LOADING = "Loading {name}…"
MODEL_INFO = "Loaded model"
PRESET = "Preset"
PRESET_INFO = "Preset contents"

PLAYGROUND_TAB = "Playground"
PROMPT = "Prompt"
PROMPT_PLACEHOLDER = "Who is Harry Potter?"
GENERATE = "Generate"
STOP = "Stop"
ORIGINAL = "Original"
MAX_NEW_TOKENS = "New tokens"
TEMPERATURE = "Temperature (0 = greedy)"
TOP_P = "Top-p"
SEED = "Seed"
SETTINGS = "Generation settings"
SPEED = "{tokens} tokens in {seconds:.1f} s ({rate:.1f} tokens/s)"

ERR_NO_MODEL = "No model is loaded yet: load one in the Model tab."
