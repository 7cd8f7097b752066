/**
 * The layering of the code, checked by dependency-cruiser in `npm test` (`npm run check:layers`).
 * docs/ARCHITECTURE.md draws the same picture. Inside common/, each folder may import only from
 * the folders below it in LAYERS (and from itself); the programs (cproxy, sproxy, demo) sit on top
 * and never import one another; nothing imports a test or the benchmark; netlab/ (the test hosts
 * and the emulated WAN) stands apart from the product, which never uses it.
 */
const LAYERS = ['support', 'protocol', 'transport', 'engine', 'endpoints', 'forwarding', 'ops'];

const layerRules = LAYERS.map((layer, index) => {
  const above = LAYERS.slice(index + 1);
  return above.length === 0
    ? null
    : {
        name: `layer-${layer}`,
        comment: `common/${layer}/ imports only from the layers below it (${LAYERS.slice(0, index).join(', ') || 'none'})`,
        severity: 'error',
        from: { path: `^common/${layer}/` },
        to: { path: `^common/(${above.join('|')})/` },
      };
}).filter((rule) => rule !== null);

module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      comment: 'A cycle means two modules cannot be read, tested or changed apart.',
      severity: 'error',
      from: {},
      to: { circular: true },
    },
    ...layerRules,
    {
      name: 'common-is-a-library',
      comment: 'common/ is the package: it knows nothing of the programs built on it.',
      severity: 'error',
      from: { path: '^common/' },
      to: { path: '^(cproxy|sproxy|demo|netlab|bench|test)/' },
    },
    {
      name: 'no-entry-point-inside',
      comment: 'common/index.ts is the package\'s face; nothing inside common/ goes through it.',
      severity: 'error',
      from: { path: '^common/' },
      to: { path: '^common/index\\.ts$' },
    },
    {
      name: 'programs-apart',
      comment: 'cproxy and sproxy share only what common/ gives them.',
      severity: 'error',
      from: { path: '^(cproxy|sproxy)/' },
      to: { path: '^(cproxy|sproxy|demo|netlab)/', pathNot: '^$1/' },
    },
    {
      name: 'netlab-stands-apart',
      comment: 'netlab/ builds networks to run the product on; it does not depend on the product.',
      severity: 'error',
      from: { path: '^netlab/' },
      to: { path: '^(common|cproxy|sproxy|demo|bench|test)/' },
    },
    {
      name: 'no-tests-in-code',
      comment: 'Shipped code never imports a test helper or the benchmark.',
      severity: 'error',
      from: { path: '^(common|cproxy|sproxy|demo|netlab)/' },
      to: { path: '^(test|bench)/' },
    },
    {
      name: 'not-to-unresolvable',
      comment: 'An import that does not resolve is a typo or a missing dependency.',
      severity: 'error',
      from: {},
      to: { couldNotResolve: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    // Type-only imports count: they tie the layers as much as value imports do.
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
  },
};
