// Starts ReDoc on /redoc. A file, not an inline script: the Content-Security-Policy allows
// scripts from this site only. ReDoc puts the page's style nonce on the <style> elements it
// writes (the policy of /redoc admits those, and no other inline style).
(function () {
  "use strict";
  var root = document.getElementById("api-docs");
  Redoc.init(root.dataset.openapiUrl, { nonce: root.dataset.styleNonce }, root);
})();
