// The editor's CodeMirror 6 modules as one ES module: esbuild bundles this file (scripts/
// _web_assets.sh, after npm ci) into node_modules/.tradeloop-bundles/codemirror.js, served as
// /static/vendor/bundles/codemirror.js. CodeMirror ships as many small packages with bare
// imports, which a browser cannot resolve without a bundle or an import map.
export { basicSetup, EditorView } from "codemirror";
export { Compartment, EditorState } from "@codemirror/state";
export { keymap } from "@codemirror/view";
export { yaml } from "@codemirror/lang-yaml";
export { forceLinting, linter, lintGutter, setDiagnostics } from "@codemirror/lint";
export { MergeView, unifiedMergeView } from "@codemirror/merge";
