/** Layering rules, checked in `npm run lint` (see docs/architecture.md). */
module.exports = {
  forbidden: [
    {
      name: 'core-is-the-bottom-layer',
      comment: 'core is the engine: it never imports app/ or relay/.',
      severity: 'error',
      from: { path: '^core/' },
      to: { path: '^(app|relay)/' }
    },
    {
      name: 'relay-does-not-import-app',
      severity: 'error',
      from: { path: '^relay/' },
      to: { path: '^app/' }
    },
    {
      name: 'production-code-does-not-import-tests',
      severity: 'error',
      from: { path: '^(core|relay|app)/' },
      to: { path: '^test/' }
    },
    {
      name: 'renderer-reaches-core-only-through-the-contract',
      comment: 'The renderer talks only to MessengerApi: from core it may import the contract and the bridge, nothing else.',
      severity: 'error',
      from: { path: '^app/renderer/' },
      to: { path: '^(core|relay|test)/|^app/(?!renderer/)', pathNot: '^core/api/(contract|bridge)\\.ts$' }
    },
    {
      name: 'renderer-imports-only-types-from-core',
      comment: 'Nothing of core may run in the renderer (it is bundled for a browser page).',
      severity: 'error',
      from: { path: '^app/renderer/' },
      to: { path: '^core/', dependencyTypesNot: ['type-only'] }
    },
    {
      name: 'no-circular',
      comment: 'Import cycles make start-up order and testing fragile.',
      severity: 'error',
      from: {},
      to: { circular: true }
    },
    {
      name: 'not-to-unresolvable',
      severity: 'error',
      from: {},
      to: { couldNotResolve: true }
    }
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    includeOnly: '^(core|relay|app|test|bin)/',
    exclude: { path: '(^dist/|/pb/.*\\.ts$)' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { exportsFields: ['exports'], conditionNames: ['import', 'require', 'node', 'default', 'types'], extensions: ['.ts', '.tsx', '.js'] }
  }
}
