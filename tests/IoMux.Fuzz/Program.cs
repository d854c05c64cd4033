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
// IOMUX_FUZZ_LOG=FILE: each crash's message is appended there with the input in hex, because afl keeps the input
// but not what the target said, and a finding that depends on timing may not repeat when the input is replayed.
string? crashLog = Environment.GetEnvironmentVariable("IOMUX_FUZZ_LOG");
Fuzzer.OutOfProcess.Run(stream =>
{
    using var buffer = new MemoryStream();
    stream.CopyTo(buffer);
    try
    {
        targets.Run(target, buffer.GetBuffer().AsSpan(0, (int)buffer.Length));
    }
    catch (Exception e) when (crashLog is not null)
    {
        File.AppendAllText(crashLog, $"{DateTime.UtcNow:O} input {Convert.ToHexString(buffer.GetBuffer(), 0, (int)buffer.Length)}\n{e}\n\n");
        throw;
    }
});
return 0;
