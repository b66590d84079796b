// Loads a page's stylesheet (web/css/<name>.css) once, when the page is first shown.
const loaded = new Set();
export function ensureCss(name) {
  if (loaded.has(name)) return;
  loaded.add(name);
  const link = document.createElement('link');
  link.rel = 'stylesheet';
  link.href = `/css/${name}.css`;
  document.head.append(link);
}
