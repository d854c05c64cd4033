using System.Diagnostics;
using System.Text.RegularExpressions;
using IoMux.SocketProxy;
using IoMux.Interop;

namespace IoMux.Tests.Proxy;

/// <summary><see cref="TimeSpans"/> against systemd itself: <c>systemd-analyze timespan</c> parses every generated
/// input (every unit, spacing, decimals, combinations, overflows, garbage) and the two must agree on each: the same
/// microseconds when systemd accepts it, the same errno (EINVAL or ERANGE) when it refuses.</summary>
[Category("System")]
public sealed partial class TimeSpanOracleTests
{
    private static readonly string[] UnitSuffixes =
    [
        "seconds", "second", "sec", "s", "minutes", "minute", "min", "months", "month", "M", "msec", "ms", "m",
        "hours", "hour", "hr", "h", "days", "day", "d", "weeks", "week", "w", "years", "year", "y", "usec", "us",
        "\u03bcs", "\u00b5s",
    ];

    /// <summary>Near misses: other spellings, other cases, units systemd's parse_sec does not have, half units.</summary>
    private static readonly string[] NotUnits =
    [
        "x", "mo", "mi", "mon", "secs", "mins", "hrs", "yr", "Min", "S", "H", "D", "W", "Y", "MS", "ns", "nsec",
        "\u03bc", "\u00b5", "u", "infinity", ".", "s.", "s5", "ms5s", "e3",
    ];

    private static readonly string[] Numbers =
    [
        "0", "1", "5", "10", "007", "123456", "1.5", "0.5", ".5", "5.", "1.0000005", "1.999999999", "0.000001",
        "12.34.56", "+5", "++5", "-1", "-0", "0x10", "1e3", "1,5", "9223372036854775807", "9223372036854775808",
        "18446744073709551615", "18446744073709", "584942", "584943", "",
    ];

    private static readonly string[] Spacings = ["", " ", "\t", "  ", "\n", "\r"];

    private static readonly string[] Handwritten =
    [
        "1h 30min", "1h30min", "1 h 30 min", "2M", "1month", "1y", "1y 2M 3w 4d 5h 6min 7s 8ms 9us", "infinity",
        " infinity ", "\tinfinity\n", "infinity x", "infinityx", "infinity5", "5 infinity", "", " ", "\t", "5 .5",
        "12.34 .56", "12.34s.56", "1s2ms", "5s5", "5 6", "1.5d", ".5h", "0.1us", "1.9999999s", "3. 1", "3.sec",
        "0.-0", "3.+1", "\v5", "\f5s", "\v-0", "\v-1", "5\v", "1 \v 2", "584942y", "584943y", "584542y 1s",
        "213503982334601d", "213503982334602d", "18446744073709551614us", "18446744073709551615us",
        "18446744073709551616us", "9223372036854775807s", "1\u00a0s", "\u00a0" + "1s", "1 s 2", "1  s   2  ms",
        "1.5M", "2.5y", "0.25w", "7.77777777777month", "1.s", "1..5", "..5", "5..", "s", "ms", "-5s", "5s-",
    ];

    [Test] // each run of systemd-analyze is bounded (AskSystemd)
    public void EveryGeneratedSpanParsesAsSystemdAnalyzeTimespanDoes()
    {
        if (SystemdAnalyzePath() is not { } systemdAnalyze)
        {
            Assert.Ignore("systemd-analyze is not installed: the oracle this test compares with is missing");
            return;
        }
        var inputs = GenerateInputs();
        var verdicts = AskSystemd(systemdAnalyze, inputs);
        Assert.That(verdicts, Has.Count.EqualTo(inputs.Count));

        var disagreements = new List<string>();
        for (int i = 0; i < inputs.Count; i++)
        {
            int errno = TimeSpans.ParseMicroseconds(inputs[i], out ulong microseconds);
            var ours = errno == 0 ? $"{microseconds} us" : Errno.Name(errno);
            var systemds = verdicts[i].Errno == 0 ? $"{verdicts[i].Microseconds} us" : Errno.Name(verdicts[i].Errno);
            if (ours != systemds)
                disagreements.Add($"{Show(inputs[i])}: systemd {systemds}, IoMux {ours}");
        }
        TestContext.Out.WriteLine($"{inputs.Count} inputs: {verdicts.Count(v => v.Errno == 0)} accepted, " +
            $"{verdicts.Count(v => v.Errno == Errno.EINVAL)} EINVAL, {verdicts.Count(v => v.Errno == Errno.ERANGE)} ERANGE");
        Assert.That(disagreements, Is.Empty, $"{disagreements.Count} of {inputs.Count} inputs disagree:\n{string.Join("\n", disagreements.Take(40))}");
        // The table must exercise both answers and both refusals, or the agreement says little.
        Assert.That(verdicts.Count(v => v.Errno == 0), Is.GreaterThan(200));
        Assert.That(verdicts.Count(v => v.Errno == Errno.EINVAL), Is.GreaterThan(100));
        Assert.That(verdicts.Count(v => v.Errno == Errno.ERANGE), Is.GreaterThan(10));
    }

    /// <summary>Every unit and near miss after a few numbers and spacings, every number before a few units, the
    /// handwritten cases, and seeded random combinations of up to four components.</summary>
    private static List<string> GenerateInputs()
    {
        var inputs = new List<string>(Handwritten);
        foreach (var unit in UnitSuffixes.Concat(NotUnits))
            foreach (var number in new[] { "1", "2.5", "5 " , "\t.75" })
                inputs.Add(number + unit);
        foreach (var number in Numbers)
            foreach (var unit in new[] { "", "s", " min", "y", "us", "M" })
                inputs.Add(number + unit);
        var random = new Random(14);
        var units = UnitSuffixes.Concat(UnitSuffixes).Concat(NotUnits).Append("").Append("").ToArray();
        for (int i = 0; i < 400; i++)
        {
            var text = new System.Text.StringBuilder();
            int components = random.Next(1, 5);
            for (int c = 0; c < components; c++)
            {
                text.Append(Spacings[random.Next(c == 0 ? 2 : Spacings.Length)]);
                text.Append(Numbers[random.Next(Numbers.Length)]);
                text.Append(Spacings[random.Next(3)]);
                text.Append(units[random.Next(units.Length)]);
            }
            inputs.Add(text.ToString());
        }
        return inputs.Distinct().ToList();
    }

    private readonly record struct Verdict(int Errno, ulong Microseconds);

    /// <summary>Runs <c>systemd-analyze timespan -- INPUT...</c> over the inputs: it prints one block per accepted
    /// input and stops at the first it refuses (exit 1, the reason on stderr), so the run starts again after that
    /// one; as many runs as refused inputs, plus one.</summary>
    private static List<Verdict> AskSystemd(string systemdAnalyze, List<string> inputs)
    {
        var verdicts = new List<Verdict>(inputs.Count);
        for (int runs = 0; verdicts.Count < inputs.Count; runs++)
        {
            Assert.That(runs, Is.LessThanOrEqualTo(inputs.Count), "systemd-analyze made no progress");
            var start = new ProcessStartInfo(systemdAnalyze) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            start.ArgumentList.Add("timespan");
            start.ArgumentList.Add("--");
            foreach (var input in inputs.Skip(verdicts.Count))
                start.ArgumentList.Add(input);
            using var process = Process.Start(start)!;
            var stderr = process.StandardError.ReadToEndAsync();
            var output = process.StandardOutput.ReadToEndAsync();
            if (!process.WaitForExit(60_000) || !Task.WaitAll([stderr, output], TimeSpan.FromSeconds(10)))
            {
                process.Kill();
                Assert.Fail("systemd-analyze did not exit within 60 s");
            }
            var stdout = output.Result;
            foreach (Match value in MicrosecondsLine().Matches(stdout))
                verdicts.Add(new Verdict(0, ulong.Parse(value.Groups[1].Value)));
            if (process.ExitCode == 0)
            {
                Assert.That(verdicts, Has.Count.EqualTo(inputs.Count), stdout);
                break;
            }
            var reason = stderr.Result;
            int errno = reason.Contains("Numerical result out of range") ? Errno.ERANGE
                : reason.Contains("Invalid argument") ? Errno.EINVAL
                : throw new AssertionException($"systemd-analyze exited {process.ExitCode} for {Show(inputs[verdicts.Count])}: {reason}");
            verdicts.Add(new Verdict(errno, 0));
        }
        return verdicts;
    }

    [GeneratedRegex(@"^\s+(?:μs|us): (\d+)$", RegexOptions.Multiline)]
    private static partial Regex MicrosecondsLine();

    private static string? SystemdAnalyzePath() =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Select(directory => Path.Combine(directory, "systemd-analyze"))
            .FirstOrDefault(File.Exists);

    private static string Show(string input) =>
        "'" + input.Replace("\t", "\\t").Replace("\n", "\\n").Replace("\r", "\\r").Replace("\v", "\\v").Replace("\f", "\\f") + "'";
}
