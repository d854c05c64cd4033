using System.Diagnostics;

namespace IoMux.Tests.Packaging;

/// <summary>The packages as a user gets them: `dotnet pack -c Release -o artifacts` (run by .ci/run before the
/// tests; run here when missing), the IoMux package installed into a throw-away console project that waits on
/// the default backend, the IoMux.Hosting package running a loop in a generic host, and the iomux tool
/// installed into a tool path. NuGet's package folder is a fresh
/// directory per run, so a package rebuilt under the same version is never served from a stale cache.</summary>
[Category("System")]
[NonParallelizable]
public sealed class PackageInstallTests
{
    private static string Version => typeof(Poller).Assembly.GetName().Version is { } v ? $"{v.Major}.{v.Minor}.{v.Build}" : "0.1.0";

    private static string Artifacts()
    {
        var root = TestProcesses.RepositoryRoot();
        var artifacts = Path.Combine(root, "artifacts");
        if (!File.Exists(Path.Combine(artifacts, $"IoMux.{Version}.nupkg")) || !File.Exists(Path.Combine(artifacts, $"IoMux.Tool.{Version}.nupkg"))
            || !File.Exists(Path.Combine(artifacts, $"IoMux.Hosting.{Version}.nupkg")))
            Run(root, "dotnet", ["pack", "IoMux.sln", "-c", "Release", "-o", artifacts], null, TimeSpan.FromMinutes(5));
        return artifacts;
    }

    private static string Run(string directory, string file, string[] arguments, string? packages, TimeSpan timeout)
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
        var artifacts = Artifacts();
        var work = Directory.CreateTempSubdirectory(prefix).FullName;
        try
        {
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
            return Run(work, "dotnet", ["run", "-c", "Release"], Path.Combine(work, "packages"), TimeSpan.FromMinutes(5));
        }
        finally
        {
            Directory.Delete(work, recursive: true);
        }
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
