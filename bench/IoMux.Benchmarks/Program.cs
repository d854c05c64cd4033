using BenchmarkDotNet.Running;
using IoMux.Benchmarks;

// dispatch / chain: the shapes measured side by side with the C references by bench/run.sh.
// Anything else goes to BenchmarkDotNet (e.g. --filter '*' --job short).
return args.FirstOrDefault() switch
{
    "dispatch" => Shapes.Dispatch(args[1..]),
    "chain" => Shapes.Chain(args[1..]),
    _ => Run(args),
};

static int Run(string[] args)
{
    BenchmarkSwitcher.FromAssembly(typeof(Shapes).Assembly).Run(args);
    return 0;
}
