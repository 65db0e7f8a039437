import neostandard from 'neostandard'

export default [
  ...neostandard({ ts: true, ignores: ['dist/**', 'coverage/**', '.tap/**', 'migrations/**', 'bench/peers/node_modules/**'] }),
  {
    files: ['src/**/*.ts'],
    rules: { 'no-console': 'error' }
  }
]
