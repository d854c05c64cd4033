using IoMux.Fuzz;
using SharpFuzz;

// Under afl-fuzz: `dotnet IoMux.Fuzz.dll TARGET`, the input on stdin (SharpFuzz's forkserver protocol).
// Without afl (a quick local replay): `dotnet IoMux.Fuzz.dll TARGET FILE...`.
if (args.Length == 0 || !FuzzTargets.Names.Contains(args[0]))
{
    Console.Error.WriteLine($"usage: IoMux.Fuzz TARGET [FILE...]; targets: {string.Join(", ", FuzzTargets.Names)}");
    return 2;
}
string target = args[0];
using var targets = new FuzzTargets();
if (args.Length > 1)
{
    foreach (var file in args.Skip(1))
        targets.Run(target, File.ReadAllBytes(file));
    Console.WriteLine($"{args.Length - 1} input(s) kept every property of {target}");
    return 0;
}
// Out of process: a stack overflow or an access violation in the target is reported as a crash of that input
// instead of taking the forkserver down with it (SharpFuzz README, "Out-of-process fuzzing").
Fuzzer.OutOfProcess.Run(stream =>
{
    using var buffer = new MemoryStream();
    stream.CopyTo(buffer);
    targets.Run(target, buffer.GetBuffer().AsSpan(0, (int)buffer.Length));
});
return 0;
