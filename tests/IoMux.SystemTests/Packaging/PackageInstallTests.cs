using System.Diagnostics;

namespace IoMux.Tests.Packaging;

/// <summary>The packages as a user gets them: `dotnet pack -c Release -o artifacts` and the tool's two RID-specific
/// packages (<see cref="PackCommands"/>, run by .ci/run before the tests; run here when missing), the IoMux package
/// installed into a throw-away console project that waits on the default backend, the IoMux.Hosting package running a
/// loop in a generic host, and the iomux tool installed into a tool path: natively on linux-x64. NuGet's package folder is a fresh
/// directory per run, so a package rebuilt under the same version is never served from a stale cache.</summary>
[Category("System")]
[NonParallelizable]
public sealed class PackageInstallTests
{
    private static string Version => typeof(Poller).Assembly.GetName().Version is { } v ? $"{v.Major}.{v.Minor}.{v.Build}" : "0.1.0";

    /// <summary>What .ci/run and the README run: the solution's packages, then the tool's RID-specific packages, which
    /// the SDK does not make from the solution's pack when the tool is Native AOT (it compiles for the host only):
    /// IoMux.Tool.linux-x64 (native) and IoMux.Tool.any (framework-dependent, every other platform).</summary>
    internal static readonly string[][] PackCommands =
    [
        ["pack", "IoMux.sln", "-c", "Release", "-o", "artifacts"],
        ["pack", "src/Cli", "-c", "Release", "-r", "linux-x64", "-o", "artifacts"],
        ["pack", "src/Cli", "-c", "Release", "-r", "any", "-o", "artifacts"],
    ];

    private static string Artifacts()
    {
        var root = TestProcesses.RepositoryRoot();
        var artifacts = Path.Combine(root, "artifacts");
        string[] expected = ["IoMux", "IoMux.Tool", "IoMux.Tool.linux-x64", "IoMux.Tool.any", "IoMux.Hosting", "IoMux.Loop", "IoMux.AspNetCore"];
        if (!expected.All(id => File.Exists(Path.Combine(artifacts, $"{id}.{Version}.nupkg"))))
            foreach (var command in PackCommands) // the native compile makes the second one the longest
                Run(root, "dotnet", [.. command.Select(a => a == "artifacts" ? artifacts : a)], null, TimeSpan.FromMinutes(8));
        return artifacts;
    }

    /// <summary>Runs <paramref name="file"/> to its end under <paramref name="timeout"/>, asserts exit code 0, returns its standard output.</summary>
    internal static string Run(string directory, string file, string[] arguments, string? packages, TimeSpan timeout)
    {
        var start = new ProcessStartInfo(file) { WorkingDirectory = directory, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var argument in arguments)
            start.ArgumentList.Add(argument);
        if (packages is not null)
            start.Environment["NUGET_PACKAGES"] = packages;
        start.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        start.Environment["DOTNET_NOLOGO"] = "1";
        using var process = Process.Start(start)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(timeout))
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"{file} {string.Join(' ', arguments)} did not finish in {timeout}");
        }
        // The output ends when every holder of the pipes has exited; a build server that dotnet left behind would
        // hold them for good, so the wait for it has a deadline too.
        Assert.That(Task.WhenAll(output, error).Wait(TimeSpan.FromSeconds(60)), Is.True, $"{file}'s output did not end: a child process still holds it");
        Assert.That(process.ExitCode, Is.EqualTo(0), $"{file} {string.Join(' ', arguments)}:\n{output.Result}\n{error.Result}");
        return output.Result;
    }

    /// <summary>A throw-away console project on the packages in artifacts/ (and the public feed for the rest):
    /// <paramref name="packages"/> referenced, <paramref name="program"/> run; returns what it printed.</summary>
    private static string RunConsumer(string prefix, string packages, string program)
    {
        var work = Directory.CreateTempSubdirectory(prefix).FullName;
        try
        {
            WriteConsumer(work, packages, program);
            return Run(work, "dotnet", ["run", "-c", "Release"], Path.Combine(work, "packages"), TimeSpan.FromMinutes(5));
        }
        finally
        {
            Directory.Delete(work, recursive: true);
        }
    }

    /// <summary>Writes the consumer project into <paramref name="work"/>: nuget.config, its own Directory.Build.props
    /// (empty: MSBuild's walk up the directories stops there, so nothing of a build around it applies), the project
    /// and Program.cs.</summary>
    private static void WriteConsumer(string work, string packages, string program)
    {
        var artifacts = Artifacts();
        File.WriteAllText(Path.Combine(work, "Directory.Build.props"), "<Project />\n");
        File.WriteAllText(Path.Combine(work, "nuget.config"), $"""
                <?xml version="1.0" encoding="utf-8"?>
                <configuration>
                  <packageSources>
                    <add key="artifacts" value="{artifacts}" />
                  </packageSources>
                </configuration>
                """);
        File.WriteAllText(Path.Combine(work, "Consumer.csproj"), $"""
                <Project Sdk="Microsoft.NET.Sdk">
                  <PropertyGroup>
                    <OutputType>Exe</OutputType>
                    <TargetFramework>net10.0</TargetFramework>
                    <Nullable>enable</Nullable>
                    <ImplicitUsings>enable</ImplicitUsings>
                  </PropertyGroup>
                  <ItemGroup>
                {packages}
                  </ItemGroup>
                </Project>
                """);
        File.WriteAllText(Path.Combine(work, "Program.cs"), program);
    }

    [Test] // no CancelAfter: every command runs under Run's own timeout
    public void TheIoMuxPackageWaitsOnTheDefaultBackendInANewProject()
    {
        var output = RunConsumer("iomux-package-", $"""    <PackageReference Include="IoMux" Version="{Version}" />""", """
            using System.IO.Pipes;
            using IoMux;

            using var poller = PollerFactory.Create();
            using var server = new AnonymousPipeServerStream(PipeDirection.In);
            using var client = new AnonymousPipeClientStream(PipeDirection.Out, server.ClientSafePipeHandle);
            using var registration = poller.Register(server.SafePipeHandle, token: 7, Interest.Readable);
            client.WriteByte(1);
            var events = new PollEvent[4];
            int n = poller.Wait(events, TimeSpan.FromSeconds(10));
            Console.WriteLine($"backend={poller.Capabilities.Name} events={n} token={events[0].Token} readable={(events[0].Readiness & Readiness.Readable) != 0}");
            """);
        Assert.That(output, Does.Contain("events=1 token=7 readable=True"));
        if (OperatingSystem.IsLinux())
            Assert.That(output, Does.Contain("backend=epoll"));
    }

    /// <summary>Issue 25: the poller, the backends and the selection ship as one assembly in one package, and every
    /// other library package depends on IoMux packages by public API only (no IoMux.Core or IoMux.Backends.* package
    /// is left to mix versions with).</summary>
    [Test]
    public void TheIoMuxPackageIsOneAssemblyAndTheLibrariesDependOnItAlone()
    {
        var artifacts = Artifacts();
        using (var package = System.IO.Compression.ZipFile.OpenRead(Path.Combine(artifacts, $"IoMux.{Version}.nupkg")))
        {
            var assemblies = package.Entries.Where(e => e.FullName.StartsWith("lib/", StringComparison.Ordinal) && e.FullName.EndsWith(".dll", StringComparison.Ordinal))
                .Select(e => e.FullName).ToList();
            Assert.That(assemblies, Is.EqualTo(new[] { "lib/net10.0/IoMux.dll" }), "the IoMux package's assemblies");
            // The split layout's IoMux package also held one lib/net10.0/IoMux.dll (the selection) and pulled the poller and
            // the backends in as IoMux.Core and IoMux.Backends.* packages: only its dependencies tell the two apart.
            Assert.That(IoMuxDependencies(package, "IoMux"), Is.Empty, "the IoMux package depends on no other IoMux package");
        }
        foreach (var id in new[] { "IoMux.Loop", "IoMux.Web", "IoMux.Hosting", "IoMux.AspNetCore" })
        {
            using var package = System.IO.Compression.ZipFile.OpenRead(Path.Combine(artifacts, $"{id}.{Version}.nupkg"));
            var ioMuxDependencies = IoMuxDependencies(package, id);
            Assert.That(ioMuxDependencies, Does.Contain("IoMux"), $"{id} depends on the IoMux package");
            Assert.That(ioMuxDependencies.Where(d => d.StartsWith("IoMux.Core", StringComparison.Ordinal) || d.StartsWith("IoMux.Backends", StringComparison.Ordinal)),
                Is.Empty, $"{id}'s dependencies");
        }
    }

    /// <summary>The ids of the IoMux packages <paramref name="package"/>'s nuspec depends on.</summary>
    private static List<string> IoMuxDependencies(System.IO.Compression.ZipArchive package, string id)
    {
        using var reader = new StreamReader(package.GetEntry($"{id}.nuspec")!.Open());
        var nuspec = System.Xml.Linq.XDocument.Parse(reader.ReadToEnd());
        return nuspec.Descendants().Where(e => e.Name.LocalName == "dependency")
            .Select(e => (string)e.Attribute("id")!).Where(d => d.StartsWith("IoMux", StringComparison.Ordinal)).Distinct().ToList();
    }

    [Test] // no CancelAfter: every command runs under Run's own timeout
    public void TheHostingPackageRunsALoopWithAGenericHostsLifetime()
    {
        var output = RunConsumer("iomux-hosting-package-", $"""
                <PackageReference Include="IoMux.Hosting" Version="{Version}" />
                <PackageReference Include="Microsoft.Extensions.Hosting" Version="10.0.0" />
            """, """
            using IoMux.Hosting;
            using Microsoft.Extensions.Hosting;
            using Microsoft.Extensions.Logging;

            var builder = Host.CreateApplicationBuilder(args);
            builder.Logging.ClearProviders();
            int ticks = 0;
            Thread? loopThread = null;
            builder.Services.AddEventLoop(loop => loop.AddTimer(TimeSpan.FromMilliseconds(5), _ =>
            {
                loopThread = Thread.CurrentThread;
                Interlocked.Increment(ref ticks);
            }, period: TimeSpan.FromMilliseconds(5)));
            using var host = builder.Build();
            await host.StartAsync();
            for (int i = 0; i < 1000 && Volatile.Read(ref ticks) < 3; i++)
                await Task.Delay(10);
            await host.StopAsync();
            Console.WriteLine($"ticked={Volatile.Read(ref ticks) >= 3} loop-thread-alive={loopThread?.IsAlive}");
            """);
        Assert.That(output, Does.Contain("ticked=True loop-thread-alive=False"));
    }

    /// <summary>A user's portable app (no platform of its own) on the packages: the poller, the loop, the Kestrel
    /// transport and the hosting call build with no warning at all (issue 25). Before, every IoMux assembly carried
    /// [UnsupportedOSPlatform("windows")] and this program got 12 CA1416 warnings, one per IoMux call; now Windows is
    /// refused at run time (PlatformNotSupportedException, PollerFactory.IsSupported) and the app runs here.</summary>
    [Test] // no CancelAfter: every command runs under Run's own timeout
    public void AnAppCallingIoMuxBuildsWithoutPlatformWarnings()
    {
        var work = Directory.CreateTempSubdirectory("iomux-warnings-").FullName;
        try
        {
            WriteConsumer(work, $"""
                    <PackageReference Include="IoMux" Version="{Version}" />
                    <PackageReference Include="IoMux.Loop" Version="{Version}" />
                    <PackageReference Include="IoMux.Hosting" Version="{Version}" />
                    <PackageReference Include="IoMux.AspNetCore" Version="{Version}" />
                """, """
                using IoMux;
                using IoMux.AspNetCore;
                using IoMux.Hosting;
                using IoMux.Loop;
                using Microsoft.AspNetCore.Builder;

                using var poller = PollerFactory.Create();
                using var loop = new EventLoop(PollerFactory.Create());
                int fired = 0;
                loop.AddTimer(TimeSpan.FromMilliseconds(1), _ => { fired++; loop.Exit(0); });
                loop.Run();
                var builder = WebApplication.CreateSlimBuilder(args);
                builder.WebHost.UseIoMux(o => o.ThreadCount = 1);
                builder.Services.AddEventLoop(l => l.AddTimer(TimeSpan.FromSeconds(1), _ => { }));
                await using var app = builder.Build();
                Console.WriteLine($"backend={poller.Capabilities.Name} timer={fired} supported={PollerFactory.IsSupported}");
                """);
            var packages = Path.Combine(work, "packages");
            // Every warning, not only CA1416: "0 Warning(s)" is what a user with warnings as errors needs.
            var build = Run(work, "dotnet", ["build", "-c", "Release", "--disable-build-servers"], packages, TimeSpan.FromMinutes(5));
            Assert.That(build, Does.Not.Contain("CA1416").And.Contain(" 0 Warning(s)"), build);
            var output = Run(work, "dotnet", ["run", "-c", "Release", "--no-build"], packages, TimeSpan.FromMinutes(2));
            Assert.That(output, Does.Contain("timer=1 supported=True"));
        }
        finally
        {
            Directory.Delete(work, recursive: true);
        }
    }

    [Test] // no CancelAfter: every command runs under Run's own timeout
    public void TheIomuxToolInstallsIntoAToolPathAndListsBackends()
    {
        var artifacts = Artifacts();
        var work = Directory.CreateTempSubdirectory("iomux-tool-").FullName;
        try
        {
            var tools = Path.Combine(work, "tools");
            Run(work, "dotnet", ["tool", "install", "IoMux.Tool", "--tool-path", tools, "--add-source", artifacts, "--version", Version],
                Path.Combine(work, "packages"), TimeSpan.FromMinutes(5));
            var iomux = Path.Combine(tools, "iomux");
            // On linux-x64 the SDK picks IoMux.Tool.linux-x64: the Native AOT binary, with no managed assembly to run.
            var store = Path.Combine(tools, ".store");
            var installed = Directory.GetFiles(store, "*", SearchOption.AllDirectories).Select(Path.GetFileName).ToList();
            if (OperatingSystem.IsLinux() && System.Runtime.InteropServices.RuntimeInformation.OSArchitecture == System.Runtime.InteropServices.Architecture.X64)
            {
                Assert.That(Directory.GetDirectories(store, "iomux.tool.linux-x64", SearchOption.AllDirectories), Is.Not.Empty,
                    $"the native package was not the one installed: {string.Join(", ", installed)}");
                Assert.That(installed, Does.Contain("IoMux.Cli").And.None.EndsWith(".dll"), "installed files");
                var native = Directory.GetFiles(store, "IoMux.Cli", SearchOption.AllDirectories).Single();
                Assert.That(File.ReadAllBytes(native).Take(4), Is.EqualTo(new byte[] { 0x7f, (byte)'E', (byte)'L', (byte)'F' }), $"{native} is not an ELF executable");
                // The conformance runner, native: every scenario on every backend here (about 15 s).
                Assert.That(Run(work, iomux, ["check"], null, TimeSpan.FromMinutes(3)), Does.Match(@"check: \d+ passed, 0 failed"));
            }
            var backends = Run(work, iomux, ["backends"], null, TimeSpan.FromMinutes(1));
            Assert.That(backends, Does.Contain("chosen:"));
            var help = Run(work, iomux, ["--help"], null, TimeSpan.FromMinutes(1));
            Assert.That(help, Does.Contain("proxy").And.Contain("serve").And.Contain("hello").And.Contain("echo"));
            // The tool runs as "dotnet IoMux.Cli.dll": help must still name the program the user typed.
            Assert.That(help, Does.Contain("  iomux [command] [options]").And.Not.Contain("IoMux.Cli"));
            Assert.That(Run(work, iomux, ["--version"], null, TimeSpan.FromMinutes(1)), Does.StartWith(Version));
        }
        finally
        {
            Directory.Delete(work, recursive: true);
        }
    }

    [Test(Description = "Where no native package fits, IoMux.Tool.any is the framework-dependent build: it runs on the shared runtime.")]
    public void TheToolsFallbackPackageIsFrameworkDependentAndRuns()
    {
        var artifacts = Artifacts();
        using (var pointer = System.IO.Compression.ZipFile.OpenRead(Path.Combine(artifacts, $"IoMux.Tool.{Version}.nupkg")))
        {
            var settings = pointer.Entries.Single(e => e.Name == "DotnetToolSettings.xml");
            using var reader = new StreamReader(settings.Open());
            Assert.That(reader.ReadToEnd(), Does.Contain("RuntimeIdentifier=\"linux-x64\" Id=\"IoMux.Tool.linux-x64\"")
                .And.Contain("RuntimeIdentifier=\"any\" Id=\"IoMux.Tool.any\""));
        }
        var work = Directory.CreateTempSubdirectory("iomux-tool-any-").FullName;
        try
        {
            System.IO.Compression.ZipFile.ExtractToDirectory(Path.Combine(artifacts, $"IoMux.Tool.any.{Version}.nupkg"), work);
            var dll = Directory.GetFiles(work, "IoMux.Cli.dll", SearchOption.AllDirectories).Single();
            Assert.That(File.Exists(Path.ChangeExtension(dll, ".runtimeconfig.json")), Is.True, "framework-dependent: a runtimeconfig beside the dll");
            Assert.That(Run(work, "dotnet", [dll, "backends"], null, TimeSpan.FromMinutes(1)), Does.Contain("chosen:"));
        }
        finally
        {
            Directory.Delete(work, recursive: true);
        }
    }

    [Test(Description = "The models of other OSes' kernels and the Mono.Posix oracle are test code: no package ships or depends on them.")]
    public void NoPackageShipsTheModels()
    {
        var artifacts = Artifacts();
        foreach (var package in Directory.GetFiles(artifacts, "*.nupkg"))
        {
            using var zip = System.IO.Compression.ZipFile.OpenRead(package);
            Assert.That(zip.Entries.Select(e => e.Name), Has.None.StartsWith("IoMux.Models"), Path.GetFileName(package));
            Assert.That(zip.Entries.Select(e => e.Name), Has.None.Matches<string>(name => name is "IoMux.Tests.dll" or "IoMux.SystemTests.dll"), Path.GetFileName(package));
            // Mono.Posix is a test oracle only: it ships no natives for FreeBSD or illumos.
            Assert.That(zip.Entries.Select(e => e.Name), Has.None.StartsWith("Mono.Posix"), Path.GetFileName(package));
            var nuspec = zip.Entries.Single(e => e.Name.EndsWith(".nuspec", StringComparison.Ordinal));
            using var reader = new StreamReader(nuspec.Open());
            Assert.That(reader.ReadToEnd(), Does.Not.Contain("Mono.Posix"), $"{Path.GetFileName(package)} depends on Mono.Posix");
        }
        Assert.That(Directory.GetFiles(artifacts, "IoMux.Models*.nupkg"), Is.Empty, "no package of the models");
    }
}
