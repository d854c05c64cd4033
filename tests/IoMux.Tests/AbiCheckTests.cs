using IoMux.Conformance;

namespace IoMux.Tests;

/// <summary><c>iomux check --abi</c>: IoMux's per-OS values against this machine's C headers, compiled here.</summary>
public sealed class AbiCheckTests
{
    private static bool HaveCompiler => new[] { "/usr/bin/cc", "/usr/bin/gcc", "/bin/cc" }.Any(File.Exists);

    [Test(Description = "On this machine every value IoMux uses agrees with the headers, and each is listed.")]
    public void EveryValueAgreesWithTheHeadersHere()
    {
        if (!HaveCompiler)
            Assert.Ignore("no C compiler here (gcc installs one); the check exits 3 then, tested below");
        var output = new StringWriter();
        int exit = AbiCheck.Run(output);
        var text = output.ToString();
        Assert.That(exit, Is.EqualTo(AbiCheck.Agrees), text);
        var rows = AbiCheck.RowsForThisOs();
        Assert.That(rows, Has.Count.GreaterThan(40));
        foreach (var row in rows)
            Assert.That(text, Does.Contain(row.Name), "every value is printed");
        Assert.That(text, Does.Contain($"all {rows.Count} values agree"));
    }

    [Test(Description = "A wrong value in IoMux's table is reported, named, and makes the exit code 1 (the check is not vacuous).")]
    public void AWrongValueIsReportedAndFails()
    {
        if (!HaveCompiler)
            Assert.Ignore("no C compiler here");
        var rows = AbiCheck.RowsForThisOs();
        int i = rows.FindIndex(r => r.Name == "FIONREAD");
        rows[i] = rows[i] with { IoMux = 0x667F };
        var output = new StringWriter();
        Assert.That(AbiCheck.Run(output, rows), Is.EqualTo(AbiCheck.Differs));
        Assert.That(output.ToString(), Does.Match(@"FIONREAD\s+0x667F\s+0x\w+\s+DIFFERS"));
        Assert.That(output.ToString(), Does.Contain("1 of"));
    }

    [Test(Description = "A value the headers do not define compares as absent: IoMux must say 'none' for it.")]
    public void AbsentMacrosCompareAsNone()
    {
        var rows = new List<AbiCheck.Row> { new("X", null, "X", "X"), new("Y", 5, "Y", "Y") };
        var output = new StringWriter();
        var headers = AbiCheck.Parse("X absent\nY absent\n");
        Assert.That(AbiCheck.Report(output, rows, headers), Is.EqualTo(AbiCheck.Differs));
        Assert.That(output.ToString(), Does.Match(@"Y\s+5\s+none\s+DIFFERS"));
        Assert.That(output.ToString(), Does.Not.Match(@"X\s+none\s+none\s+DIFFERS"));
    }

    [Test(Description = "Without a C compiler the check says so in one line and exits 3 (nothing compared).")]
    public void WithoutACompilerTheCheckExitsThree()
    {
        var output = new StringWriter();
        Assert.That(AbiCheck.Run(output, AbiCheck.RowsForThisOs(), searchPath: "/nonexistent"), Is.EqualTo(AbiCheck.NoCompiler));
        Assert.That(output.ToString().Trim().Split('\n'), Has.Length.EqualTo(1));
        Assert.That(output.ToString(), Does.Contain("no C compiler"));
    }
}
